"""bench/cpu.py: CPU seconds and memory of processes from /proc."""

from __future__ import annotations

import os

import pytest

from bench.cpu import (
    CpuMeter,
    CpuWindow,
    cpu_seconds,
    parse_busy_ticks,
    parse_cpu_ticks,
    parse_rss_bytes,
    rss_bytes,
)

# proc(5) fields: pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ...
STAT = "4242 (python -m (odd) name) S 1 4242 4242 0 -1 4194560 1200 0 3 0 731 96 0 0 20 0 1 0 500 1000 200"


def test_cpu_ticks_are_utime_plus_stime_even_when_the_name_holds_spaces_and_parentheses() -> None:
    assert parse_cpu_ticks(STAT) == 731 + 96


def test_rss_is_read_from_the_vmrss_line_in_bytes() -> None:
    status = "Name:\tpython\nVmPeak:\t  900 kB\nVmRSS:\t   52344 kB\nThreads:\t1\n"

    assert parse_rss_bytes(status) == 52344 * 1024


def test_a_status_without_vmrss_is_refused() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        parse_rss_bytes("Name:\tkthreadd\nState:\tS (sleeping)\n")


def test_machine_busy_time_leaves_out_idle_and_iowait() -> None:
    stat = "cpu  100 5 50 9000 30 7 8 2 0 0\ncpu0 50 2 25 4500 15 3 4 1 0 0\n"

    assert parse_busy_ticks(stat) == 100 + 5 + 50 + 7 + 8 + 2


def test_proc_stat_must_start_with_the_cpu_total() -> None:
    with pytest.raises(ValueError):
        parse_busy_ticks("intr 123\n")


def test_this_process_can_be_read_and_its_cpu_time_only_grows() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(200_000))

    assert cpu_seconds(os.getpid()) >= before > 0
    assert rss_bytes(os.getpid()) > 0


def test_the_meter_reports_each_named_process_and_the_rest_of_the_machine() -> None:
    meter = CpuMeter({"me": os.getpid()})
    meter.start()
    sum(i * i for i in range(200_000))

    window = meter.stop()

    assert set(window.cpu) == {"me"}
    assert window.cpu["me"] >= 0 and window.others >= 0 and window.wall_seconds > 0


def test_the_meter_cannot_stop_before_it_started() -> None:
    with pytest.raises(RuntimeError):
        CpuMeter({}).stop()


def test_a_window_adds_up_processes_by_name_prefix_and_tells_utilisation() -> None:
    window = CpuWindow(wall_seconds=2.0, cpu={"replica-1": 1.9, "replica-2": 0.5, "redis": 0.1}, others=0.0)

    assert window.total("replica-") == pytest.approx(2.4)
    assert window.utilisation("replica-1") == pytest.approx(0.95)
    assert CpuWindow(wall_seconds=0.0, cpu={"redis": 0.1}, others=0.0).utilisation("redis") == 0.0
