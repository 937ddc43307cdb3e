"""bench/control.py: driving a real worker process over its stdin and stdout."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.control import Worker, python_module


@pytest.fixture
async def emitter(tmp_path: Path) -> AsyncIterator[Worker]:
    """The emitter worker, not opened: no Redis is needed to talk to it."""
    worker = Worker("emitter", python_module("bench.emitter"), tmp_path / "emitter.log")
    await worker.start()
    yield worker
    await worker.stop()


async def test_a_failed_command_raises_in_the_orchestrator_and_the_worker_keeps_serving(emitter: Worker) -> None:
    with pytest.raises(RuntimeError, match="emitter failed 'run': RuntimeError: open first"):
        await emitter.call("run", mode="targeted", rate=1, duration=1, step=1, users=["a"], senders=1, seed=0,
                           timeout=20)

    assert await emitter.call("close", timeout=20) == {}


async def test_an_unknown_command_names_the_known_ones(emitter: Worker) -> None:
    with pytest.raises(RuntimeError, match=r"unknown command; known: \['close', 'open', 'run'\]"):
        await emitter.call("fly", timeout=20)


async def test_closing_stdin_stops_the_worker(tmp_path: Path) -> None:
    worker = Worker("emitter", python_module("bench.emitter"), tmp_path / "emitter.log")
    await worker.start()
    pid = worker.pid

    await worker.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # exited and reaped
    with pytest.raises(RuntimeError, match="not running"):
        await worker.call("close", timeout=1)
