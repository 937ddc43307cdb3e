"""bench/compression.py: the table it prints."""

from __future__ import annotations

from bench.compression import Measurement, deflate_alone, message_bytes, table


def test_the_benchmark_message_is_navigation_sized() -> None:
    assert 150 <= message_bytes() <= 400


def test_deflate_with_its_context_kept_shrinks_repeated_messages_several_times() -> None:
    cpu_us, size = deflate_alone(per_connection=20, messages=200)

    assert cpu_us > 0
    assert size < message_bytes() / 2


def test_the_table_has_a_row_per_setting_with_units() -> None:
    rows = [Measurement(compression=False, connections=10, idle_bytes_per_connection=30 * 1024, delivered=100,
                        delivered_fraction=1.0, server_cpu_us_per_msg=250.0, wire_bytes_per_msg=174.0, p99_ms=3.0),
            Measurement(compression=True, connections=10, idle_bytes_per_connection=130 * 1024, delivered=99,
                        delivered_fraction=0.99, server_cpu_us_per_msg=None, wire_bytes_per_msg=None, p99_ms=None)]

    lines = table(rows, rate=100, duration=2).splitlines()

    assert lines[0].startswith("10 connections offering permessage-deflate; targeted messages at 100/s for 2 s "
                               "(20 per connection)")
    assert lines[-2] == "| false | 30.0 KiB | 250 µs | 174 B | 100 (100.00%) | 3.0 ms |"
    assert lines[-1] == "| true | 130.0 KiB | - | - | 99 (99.00%) | - |"
