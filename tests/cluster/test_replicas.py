"""``ReplicaSet``: replicas started together, and never left running when a start fails."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster import ReplicaSet
from cluster.processes import HOST, Replica, http_status, wait_until_async
from tests.cluster import fake_replica

FAKE = "tests.cluster.fake_replica"


def fakes(log_dir: Path, count: int = 3, **env: str) -> ReplicaSet:
    return ReplicaSet(count, env=env, log_dir=log_dir, module=FAKE, ready_timeout=20)


def record_launches(replicas: ReplicaSet, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pid of each replica, recorded as it is launched: whether it still runs can be asked after a failed start."""
    pids: list[int] = []
    for replica in replicas.replicas:
        def launch(replica: Replica = replica, launch: Callable[[], None] = replica.launch) -> None:
            launch()
            pids.append(replica.pid)

        monkeypatch.setattr(replica, "launch", launch)
    return pids


def running(pids: list[int]) -> list[int]:
    """The processes among ``pids`` that still exist (a stopped replica has been waited for, so it is gone)."""
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


def test_start_returns_once_every_replica_is_ready_and_stop_ends_them_all(tmp_path: Path) -> None:
    replicas = ReplicaSet(3, env={}, log_dir=tmp_path, module=FAKE, name="fake")

    with replicas:
        assert [replica.instance_id for replica in replicas.replicas] == ["fake-1", "fake-2", "fake-3"]
        assert [http_status(url + "/readyz") for url in replicas.urls] == [200, 200, 200]
        pids = replicas.pids

    assert running(pids) == []


def test_replicas_of_a_command_of_their_own_run_it_with_the_replica_settings(tmp_path: Path) -> None:
    script = [sys.executable, str(Path(fake_replica.__file__))]  # not ``python -m``: any program will do
    replicas = ReplicaSet(2, env={"FAKE_STATUS": "200"}, log_dir=tmp_path, argv=script, name="script")

    with replicas:
        assert [replica.argv for replica in replicas.replicas] == [script, script]
        assert [http_status(url + "/readyz") for url in replicas.urls] == [200, 200]
        pids = replicas.pids

    assert running(pids) == []


def test_a_replica_that_exits_fails_the_start_with_its_code_and_the_others_are_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = fakes(tmp_path, FAKE_EXIT="replica-2")
    launched = record_launches(replicas, monkeypatch)

    with pytest.raises(RuntimeError, match="replica-2 exited with code 3"):
        replicas.start()

    assert len(launched) == 3
    assert running(launched) == []


def test_a_port_taken_fails_the_start_and_the_replica_launched_before_is_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = fakes(tmp_path)
    launched = record_launches(replicas, monkeypatch)

    with socket.socket() as squatter:
        squatter.bind((HOST, replicas.replicas[1].port))
        squatter.listen()
        with pytest.raises(OSError, match="replica-2 cannot listen"):
            replicas.start()

    assert len(launched) == 1
    assert running(launched) == []


def test_replicas_not_ready_by_the_deadline_fail_the_start_and_are_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = ReplicaSet(2, env={"FAKE_STATUS": "503"}, log_dir=tmp_path, module=FAKE, ready_timeout=1)
    launched = record_launches(replicas, monkeypatch)

    with pytest.raises(TimeoutError, match="replica-1, replica-2 to answer /readyz"):
        replicas.start()

    assert running(launched) == []


async def test_cancelling_an_async_start_stops_the_replicas_at_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    replicas = fakes(tmp_path, 2, FAKE_STATUS="503")
    launched = record_launches(replicas, monkeypatch)
    starting = asyncio.create_task(replicas.start_async())
    # Both answer, not ready: the start waits, and this test runs meanwhile only if that wait yields.
    await wait_until_async(lambda: all(http_status(url + "/readyz") == 503 for url in replicas.urls),
                           timeout=15, what="both fakes answering")

    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert running(launched) == []
