"""CPU seconds and resident memory of processes, read from ``/proc``.

Every step reports the CPU time each process (replicas, Redis, emitter, load
generator) spent during the step, so a reader can see who was saturated: a
process whose CPU seconds approach the step's wall time was the bottleneck.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuMeter", "CpuWindow", "cpu_seconds", "machine_busy_seconds", "parse_busy_ticks", "parse_cpu_ticks",
           "parse_rss_bytes", "rss_bytes"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def parse_cpu_ticks(stat: str) -> int:
    """User plus system time, in clock ticks, from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or
    parentheses, so the fields are counted from the last ``)``: utime and stime
    are fields 14 and 15 of proc(5), the 12th and 13th after the name.
    """
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def parse_rss_bytes(status: str) -> int:
    """Resident set size from the text of ``/proc/<pid>/status`` (its ``VmRSS`` line, in kB)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS line: the process is a zombie or a kernel thread")


def parse_busy_ticks(stat: str) -> int:
    """Busy time of the whole machine, in clock ticks, from the text of ``/proc/stat``.

    Its first line adds up every core: user, nice, system, idle, iowait, irq,
    softirq, steal, ... Busy is everything but idle and iowait (guest time is
    already inside user).
    """
    fields = stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("the first line of /proc/stat is not the 'cpu' total")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return user + nice + system + irq + softirq + steal


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has been busy, by anyone."""
    return parse_busy_ticks((PROC / "stat").read_text()) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """CPU seconds ``pid`` has used so far (all its threads)."""
    return parse_cpu_ticks((PROC / str(pid) / "stat").read_text()) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    return parse_rss_bytes((PROC / str(pid) / "status").read_text())


@dataclass(frozen=True)
class CpuWindow:
    """CPU seconds per process over a stretch of wall time, and what the rest of
    the machine used meanwhile (``others``: other people's work on a shared box)."""

    wall_seconds: float
    cpu: dict[str, float]
    others: float

    def total(self, prefix: str) -> float:
        """CPU seconds of every process whose name starts with ``prefix`` (e.g. all ``replica-``)."""
        return sum(seconds for name, seconds in self.cpu.items() if name.startswith(prefix))

    def utilisation(self, name: str) -> float:
        """Share of one core ``name`` used: near 1.0 means that process was saturated."""
        return self.cpu[name] / self.wall_seconds if self.wall_seconds > 0 else 0.0


class CpuMeter:
    """Measures named processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self._pids = dict(pids)
        self._started: tuple[float, dict[str, float]] | None = None

    def start(self) -> None:
        self._started = (time.monotonic(), self._read())

    def stop(self) -> CpuWindow:
        if self._started is None:
            raise RuntimeError("CpuMeter.stop() before start()")
        (began, before), after = self._started, self._read()
        self._started = None
        used = {name: after[name] - before[name] for name in after}
        machine = used.pop(_MACHINE)
        return CpuWindow(wall_seconds=time.monotonic() - began, cpu=used,
                         others=max(0.0, machine - sum(used.values())))

    def _read(self) -> dict[str, float]:
        return {**{name: cpu_seconds(pid) for name, pid in self._pids.items()}, _MACHINE: machine_busy_seconds()}


_MACHINE = "\0machine"  # cannot clash with a process name
