"""bench/node/: the Node systems' own parts, run under ``node``, checked against the Python ones they mirror.

The package-free modules (the message, the pacing, the replica's auth and adapter choice) run
with ``node`` alone; the replica, and a load step on each Node system, need ``make install``
(``npm ci`` in bench/node) and redis-server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.cluster import SystemUnderTest
from bench.loadgen import Client, Recorder
from bench.message import payload
from bench.pacing import Schedule
from bench.rig import Rig
from bench.systems import NODE_DIR, missing_tools
from kindmap_realtime.messages.checks import validate_user_id

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run_node(script: str) -> Any:
    """Run an ES module script in bench/node/ and return what it printed as JSON."""
    done = subprocess.run(["node", "--input-type=module", "-e", script], cwd=NODE_DIR, capture_output=True,
                          text=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_the_node_payload_is_the_python_payload_stamped_on_the_same_clock() -> None:
    before = time.monotonic()
    data = run_node('import {payload} from "./message.js"; console.log(JSON.stringify(payload(3, 7)))')
    after = time.monotonic()

    assert before < data.pop("t") < after  # CLOCK_MONOTONIC in both processes
    expected = payload(3, 7)
    del expected["t"]
    assert data == expected
    assert list(data) == list(expected)  # the same fields in the same order: the same bytes on the wire


@pytest.mark.parametrize(("rate", "duration", "nows"), [
    pytest.param(4.0, 1.0, [0.0, 0.0, 0.1, 0.5, 0.9, 0.95], id="on-time"),
    pytest.param(10.0, 1.0, [0.0, 0.7, 0.7, 1.0], id="behind-then-over"),
    pytest.param(None, 0.5, [0.0, 0.1, 0.2, 0.6], id="as-fast-as-possible"),
])
def test_the_node_schedule_hands_out_the_due_times_of_the_python_one(rate: float | None, duration: float,
                                                                      nows: list[float]) -> None:
    python = Schedule(float("inf") if rate is None else rate, duration, start=100.0)
    expected = [python.take(100.0 + now) for now in nows]

    got = run_node(f'import {{Schedule}} from "./pacing.js";'
                   f'const s = new Schedule({"Infinity" if rate is None else rate}, {duration}, 100);'
                   f'console.log(JSON.stringify({json.dumps(nows)}.map((now) => s.take(100 + now))))')

    assert got == pytest.approx(expected)


def test_a_seeded_pick_repeats_for_its_seed_and_spreads_over_the_users() -> None:
    picks = run_node('import {seededPick} from "./pacing.js"; const users = ["a", "b", "c", "d"];'
                     'const draw = (seed) => { const pick = seededPick(users, seed);'
                     ' return Array.from({length: 400}, () => pick()); };'
                     'console.log(JSON.stringify([draw(1), draw(1), draw(2)]))')

    assert picks[0] == picks[1] != picks[2]
    assert {user: picks[0].count(user) for user in "abcd"} == pytest.approx({u: 100 for u in "abcd"}, abs=40)


USER_IDS: list[Any] = ["bench-00001", "a@b.c:d_e-f", "x" * 128, "x" * 129, "", "two words", "ü", 5, None, ["a"]]


def test_the_node_replica_accepts_exactly_the_user_ids_ours_accepts_in_dev_mode() -> None:
    got = run_node(f'import {{authenticate}} from "./replica.js";'
                   f'const ids = {json.dumps(USER_IDS)};'
                   f'console.log(JSON.stringify([...ids.map((id) => authenticate({{user_id: id}})),'
                   f' authenticate({{}}), authenticate(undefined)]))')

    assert got == [validate_user_id(user_id) for user_id in USER_IDS] + [None, None]


def test_the_node_error_payload_has_the_documented_schema_and_a_utc_offset() -> None:
    error = run_node('import {errorPayload} from "./replica.js";'
                     'console.log(JSON.stringify(errorPayload("INVALID_PARAMETERS", "no")))')

    assert set(error) == {"type", "code", "message", "timestamp"}
    assert (error["type"], error["code"], error["message"]) == ("error", "INVALID_PARAMETERS", "no")
    assert datetime.fromisoformat(error["timestamp"]).utcoffset() == timedelta(0)
    assert error["timestamp"].endswith("+00:00")


FAKE_ADAPTERS = """
import {adapterFactory} from "./replica.js";
let confirm;
const subClient = {sSubscribe: () => new Promise((resolve) => { confirm = resolve; })};
const adapters = {sharded: (pub, sub, options) => { sub.sSubscribe("one"); return {options}; }, classic: () => ({})};
"""


def test_the_adapter_is_ready_only_once_redis_confirmed_its_subscriptions() -> None:
    got = run_node(FAKE_ADAPTERS + """
const {adapter, subscribed} = adapterFactory(adapters, "sharded", {}, subClient, "kindmap_bench");
let ready = false;
const waiting = subscribed().then(() => { ready = true; });
await new Promise((resolve) => setImmediate(resolve));
const before = ready;
confirm();
await waiting;
console.log(JSON.stringify({before, after: ready, options: adapter.options}));
""")

    assert got == {"before": False, "after": True, "options": {"channelPrefix": "kindmap_bench"}}


@pytest.mark.parametrize(("mode", "expected"), [
    pytest.param("classic", "Error: the classic adapter subscribed to nothing", id="subscribed-to-nothing"),
    pytest.param("fancy", "Error: SOCKETIO_ADAPTER must be one of sharded, classic, got fancy", id="unknown-mode"),
])
def test_an_adapter_that_cannot_be_ready_fails_the_start(mode: str, expected: str) -> None:
    got = run_node(FAKE_ADAPTERS + f"""
try {{
  await adapterFactory(adapters, "{mode}", {{}}, subClient, "").subscribed();
  console.log(JSON.stringify("started"));
}} catch (err) {{
  console.log(JSON.stringify(`${{err.name}}: ${{err.message}}`));
}}
""")

    assert got == expected


# The replica itself: the handshake the load generator makes, on a real Redis.

needs_replica = pytest.mark.skipif(missing_tools(["node-classic"]) is not None or shutil.which("redis-server") is None,
                                   reason="needs make install (npm ci in bench/node) and redis-server")


@pytest.fixture(params=["node-classic", "node-sharded"])
async def node_replica(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with SystemUnderTest(request.param, 1, tmp_path) as system:
        yield system.urls[0]


@needs_replica
async def test_the_node_replica_lets_a_user_in_as_the_load_generator_connects(node_replica: str) -> None:
    async with aiohttp.ClientSession() as session:
        client = await Client.connect(session, node_replica, "bench-00001", compress=False, recorder=Recorder())
        await client.close()


@needs_replica
async def test_the_node_replica_refuses_a_bad_user_id_with_an_error_payload(node_replica: str) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConnectionError, match=r'connection refused: \{"message":.*"code":"INVALID_PARAMETERS"'):
            await Client.connect(session, node_replica, "two words", compress=False, recorder=Recorder())


@needs_replica
@pytest.mark.parametrize("system", ["node-classic", "node-sharded"])
async def test_a_node_system_under_load_delivers_every_message_and_is_measured_like_the_others(
        system: str, tmp_path: Path) -> None:
    users = [f"bench-{i:05d}" for i in range(20)]
    async with Rig(system, replicas=2, users=users, log_dir=tmp_path, compression=True) as rig:
        await rig.connect(compress=True)  # raises unless every connection negotiated permessage-deflate
        targeted = await rig.step("targeted", rate=50, duration=1.0, seed=1)
        broadcast = await rig.step("broadcast", rate=5, duration=1.0, broadcast=True)

    assert (targeted.sent, targeted.failed, targeted.lost, targeted.extra) == (50, 0, 0, 0)
    assert broadcast.delivered == broadcast.sent * len(users) and broadcast.lost == 0
    assert {"redis", "replica-1", "replica-2", "emitter", "loadgen"} <= set(targeted.cpu_s)
    assert targeted.connections_open == len(users)
