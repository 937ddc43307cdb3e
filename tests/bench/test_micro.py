"""bench/micro.py and bench/micro_replica.py: every measurement runs and measures what it names.

Nothing about speed is asserted (performance figures live in bench/MICRO.md); the runs
are cut small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro import CONFIGS, Run, emit_costs, json_costs, redis_costs, send_check_costs


def test_json_costs_time_each_step_with_both_codecs() -> None:
    rows = json_costs(calls=50, runs=1)

    assert [what.split(" (")[0] for what, _json, _orjson in rows] == [
        "Socket.IO packet encode", "Socket.IO packet decode", "queue envelope JSON encode",
        "queue envelope JSON decode"]
    assert all(with_json > 0 and with_orjson > 0 for _what, with_json, with_orjson in rows)


def test_send_and_emit_costs_are_measured_per_recipient_and_per_emit() -> None:
    assert [what for what, cost in send_check_costs(calls=200, runs=1) if cost > 0] == [
        "ASCII packet", "Korean packet"]
    assert [what for what, cost in emit_costs(calls=20, runs=1) if cost > 0] == [
        "stock AsyncManager.emit", "ours, each send awaited in turn (LocalDelivery)"]


def test_redis_costs_read_with_hiredis_and_with_the_python_parser() -> None:
    rows = redis_costs(messages=100, runs=1)

    assert [what for what, _hiredis, _python in rows] == ["pub/sub listen", "XREAD, batches of 1,000"]
    assert all(with_hiredis > 0 and with_python > 0 for _what, with_hiredis, with_python in rows)


@pytest.mark.parametrize("config", CONFIGS)
async def test_a_replica_of_each_configuration_delivers_every_message_it_sends(config: str, tmp_path: Path) -> None:
    async with Run(config, users=["micro-a", "micro-b"], log_dir=tmp_path) as run:
        sent, delivered, cpu = await run.step(1, rate=100, seconds=0.3)

    assert sent > 0
    assert delivered == sent
    assert cpu >= 0
