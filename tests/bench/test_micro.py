"""bench/micro.py and bench/micro_replica.py: every measurement runs and measures what it names.

Nothing about speed is asserted (performance figures live in bench/MICRO.md); the runs
are cut small.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro import CONFIGS, Run, emit_costs, json_costs, redis_costs, send_check_costs
from bench.micro_route import LUA, route_costs


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


def test_route_costs_time_durable_sends_that_store_and_volatile_ones_that_do_not() -> None:
    costs = route_costs(users=5, prefill=2, messages=40, runs=2, batch=10)
    durable, volatile = costs[False].per_message(), costs[True].per_message()

    assert [len(cost.redis_us) for cost in costs.values()] == [2, 2]  # every run of each kind, 40 messages each
    assert all(us > 0 for cost in costs.values() for us in cost.script_us + cost.emitter_us)
    # Durable: the user's sessions read and the history appended to, beside the presence and the inbox.
    assert (durable["rpush"][0], durable["rpushx"][0], durable["hgetall"][0]) == (1.0, 1.0, 2.0)
    assert (volatile["rpush"][0], volatile["hgetall"][0], "rpushx" in volatile) == (1.0, 1.0, False)
    assert LUA in durable and "config|resetstat" not in durable


@pytest.mark.parametrize("config", CONFIGS)
async def test_a_replica_of_each_configuration_delivers_every_message_it_sends(config: str, tmp_path: Path) -> None:
    async with Run(config, users=["micro-a", "micro-b"], log_dir=tmp_path) as run:
        sent, delivered, cpu = await run.step(1, rate=100, seconds=0.3)

    assert sent > 0
    assert delivered == sent
    assert cpu >= 0
