"""bench/control.py: driving a real worker process over its stdin and stdout.

The emitters of every system speak the same protocol: the Python one (``bench.emitter``)
and the Node one (``bench/node/emitter.js``, when ``make install`` has installed its packages).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.control import Worker
from bench.systems import SYSTEMS, missing_tools

EMITTERS = [
    pytest.param(SYSTEMS["ours"].emitter, id="python"),
    pytest.param(SYSTEMS["node-classic"].emitter, id="node",
                 marks=pytest.mark.skipif(missing_tools(["node-classic"]) is not None,
                                          reason="needs node and make install (npm ci in bench/node)")),
]


@pytest.fixture(params=EMITTERS)
def emitter_argv(request: pytest.FixtureRequest) -> tuple[str, ...]:
    argv: tuple[str, ...] = request.param
    return argv


@pytest.fixture
async def emitter(tmp_path: Path, emitter_argv: tuple[str, ...]) -> AsyncIterator[Worker]:
    """An emitter worker, not opened: no Redis is needed to talk to it."""
    worker = Worker("emitter", emitter_argv, tmp_path / "emitter.log")
    await worker.start()
    yield worker
    await worker.stop()


async def test_a_failed_command_raises_in_the_orchestrator_and_the_worker_keeps_serving(emitter: Worker) -> None:
    with pytest.raises(RuntimeError, match=r"emitter failed 'run': \w*Error: open first"):
        await emitter.call("run", mode="targeted", rate=1, duration=1, step=1, users=["a"], senders=1, seed=0,
                           timeout=20)

    assert await emitter.call("close", timeout=20) == {}


async def test_an_unknown_command_names_the_known_ones(emitter: Worker) -> None:
    with pytest.raises(RuntimeError, match=r"unknown command; known: \W*close\W+open\W+run"):
        await emitter.call("fly", timeout=20)


async def test_closing_stdin_stops_the_worker(tmp_path: Path, emitter_argv: tuple[str, ...]) -> None:
    worker = Worker("emitter", emitter_argv, tmp_path / "emitter.log")
    await worker.start()
    pid = worker.pid

    await worker.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    with pytest.raises(RuntimeError, match="not running"):
        await worker.call("close", timeout=1)


async def test_opening_an_unknown_system_fails_and_names_it(emitter: Worker) -> None:
    with pytest.raises(RuntimeError, match=r"emitter failed 'open': \w*Error: unknown system .nope."):
        await emitter.call("open", system="nope", redis_url="redis://127.0.0.1:1/0", channel="c", timeout=20)


async def test_a_volatile_run_is_refused_by_a_publisher_that_keeps_no_history(tmp_path: Path) -> None:
    worker = Worker("emitter", SYSTEMS["baseline"].emitter, tmp_path / "emitter.log")
    await worker.start()
    try:
        await worker.call("open", system="baseline", redis_url="redis://127.0.0.1:1/0", channel="c", timeout=20)
        with pytest.raises(RuntimeError, match=r"emitter failed 'run': ValueError: BaselinePublisher has no "
                                               r"volatile send"):
            await worker.call("run", mode="targeted", rate=1, duration=1, step=1, users=["a"], senders=1, seed=0,
                              volatile=True, timeout=20)
    finally:
        await worker.stop()
