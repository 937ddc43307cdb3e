"""bench/results.py: a step's figures from what the emitter sent, the clients received and /proc."""

from __future__ import annotations

from typing import Any

import pytest

from bench.cpu import CpuWindow
from bench.results import IdleResult, step_result

USERS = ["alice", "bob", "carol"]


def received(per_user: dict[str, int], latencies: list[float], *, first: float | None = 10.0,
             last: float | None = 12.0, late: int = 0, open_: int = 3) -> dict[str, Any]:
    return {"received": per_user, "latencies": latencies, "first": first, "last": last, "late": late, "open": open_}


def window(**cpu: float) -> CpuWindow:
    return CpuWindow(wall_seconds=2.0, cpu=cpu, others=0.5)


def step(*, offered: float | None = 100.0, broadcast: bool = False, sent: dict[str, int], got: dict[str, Any],
         cpu: CpuWindow | None = None) -> Any:
    return step_result(scenario="targeted", system="ours", compression=False, replicas=2, users=USERS,
                       offered_rate=offered, duration=2.0, broadcast=broadcast,
                       sent={"per_user": sent, "failed": {"PublishError": 1}}, received=got,
                       cpu=cpu or window(**{"replica-1": 0.3, "replica-2": 0.1, "emitter": 0.02, "loadgen": 1.9}))


def test_targeted_messages_are_expected_by_the_user_they_were_sent_to() -> None:
    result = step(sent={"alice": 150, "bob": 50}, got=received({"alice": 150, "bob": 49}, [0.001] * 199))

    assert (result.sent, result.failed, result.expected, result.delivered, result.lost) == (200, 1, 200, 199, 1)
    assert result.delivered_fraction == pytest.approx(199 / 200)
    assert result.achieved_rate == pytest.approx(100.0)
    assert not result.emitter_short


def test_a_broadcast_is_expected_once_by_every_user() -> None:
    result = step(broadcast=True, sent={"*": 4}, got=received({"alice": 4, "bob": 4, "carol": 3}, [0.01] * 11))

    assert (result.expected, result.delivered, result.lost) == (12, 11, 1)


def test_an_emitter_below_95_percent_of_the_offered_rate_marks_the_step() -> None:
    assert step(offered=110.0, sent={"alice": 200}, got=received({"alice": 200}, [0.001] * 200)).emitter_short
    assert not step(offered=None, sent={"alice": 200}, got=received({"alice": 200}, [0.001] * 200)).emitter_short


def test_cpu_per_message_counts_every_replica_against_delivered_messages_only() -> None:
    result = step(sent={"alice": 100, "bob": 100}, got=received({"alice": 100}, [0.001] * 100))

    assert result.server_cpu_s == pytest.approx(0.4)
    assert result.server_cpu_ms_per_msg == pytest.approx(0.4 / 100 * 1000)
    assert result.emitter_cpu_us_per_msg == pytest.approx(0.02 / 200 * 1e6)
    assert result.others_cpu_s == 0.5
    assert result.saturated == ["loadgen"]  # 1.9 s of a 2 s window


def test_deliveries_per_second_spread_over_the_arrival_span_when_it_outlasts_the_step() -> None:
    late_arrivals = received({"alice": 100}, [5.0] * 100, first=10.0, last=20.0)

    assert step(sent={"alice": 100}, got=late_arrivals).deliveries_per_s == pytest.approx(10.0)
    assert step(sent={"alice": 100}, got=received({"alice": 100}, [0.001] * 100)).deliveries_per_s == 50.0


def test_a_step_where_nothing_arrived_has_no_latency_and_no_cpu_per_message() -> None:
    result = step(sent={"alice": 10}, got=received({}, [], first=None, last=None))

    assert (result.delivered, result.p99_ms, result.server_cpu_ms_per_msg, result.deliveries_per_s) == (0, None, None,
                                                                                                       0.0)
    assert "p99=       -" in result.line()


def test_idle_memory_per_connection_is_the_growth_divided_by_the_connections() -> None:
    result = IdleResult(system="baseline", compression=True, connections=1000, rss_before_bytes=50_000_000,
                        rss_after_bytes=80_000_000, connect_s=3.0)

    assert result.bytes_per_connection == 30_000
    assert result.to_json()["bytes_per_connection"] == 30_000
    assert "29.3 KiB each" in result.line()


def test_connections_that_dropped_during_a_step_are_reported() -> None:
    result = step(sent={"alice": 10}, got=received({"alice": 10}, [0.001] * 10, open_=2))

    assert result.connections_open == 2
    assert "DROPPED=1" in result.line()
