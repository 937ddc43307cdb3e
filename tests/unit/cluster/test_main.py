"""``python -m server.cluster``: arguments, start-up failures and processes that end."""

from __future__ import annotations

import threading

import pytest

from server.cluster import __main__ as cli


@pytest.mark.parametrize(("args", "message"), [
    (["--replicas", "0"], "--replicas must be between 1 and 16"),
    (["--replicas", "17"], "--replicas must be between 1 and 16"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--replicas", "three"], "invalid int value"),
])
def test_bad_arguments_exit_2_with_the_reason(args, message, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(args)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_cluster_that_cannot_start_exits_1_with_the_reason(monkeypatch, capsys):
    def refuse(**options):
        raise RuntimeError("replica-1 exited with code 2")

    monkeypatch.setattr(cli, "LocalCluster", refuse)

    assert cli.main(["--replicas", "1"]) == 1
    assert capsys.readouterr().err == "the cluster could not start: replica-1 exited with code 2\n"


class FakeProcess:
    def __init__(self, name: str, codes: list[int | None]) -> None:
        self.name = name
        self.log_path = f"/tmp/{name}.log"
        self._codes = codes

    def exit_code(self) -> int | None:
        return self._codes.pop(0) if len(self._codes) > 1 else self._codes[0]


class FakeCluster:
    """Stands in for LocalCluster; ``stopping`` is set after a few rounds of the watch loop."""

    def __init__(self, processes: list[FakeProcess], stopping: threading.Event, rounds: int) -> None:
        self.processes = processes
        self.entered = self.exited = False
        self._stopping = stopping
        self._rounds = rounds

    def describe(self) -> str:
        return "  described"

    def __enter__(self) -> FakeCluster:
        self.entered = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exited = True

    def watched(self) -> None:
        self._rounds -= 1
        if self._rounds == 0:
            self._stopping.set()


def test_a_process_that_ends_on_its_own_is_reported_once(monkeypatch, capsys):
    stopping = threading.Event()
    replica = FakeProcess("replica-2", [None, -9])
    cluster = FakeCluster([FakeProcess("replica-1", [None]), replica], stopping, rounds=4)
    monkeypatch.setattr(stopping, "wait", lambda timeout: (cluster.watched(), stopping.is_set())[1])

    cli._run(cluster, stopping)  # type: ignore[arg-type]

    out = capsys.readouterr().out
    assert out.startswith("KindMap cluster is up:\n  described\nCtrl-C stops everything.\n")
    assert out.count("replica-2 exited with code -9; see /tmp/replica-2.log") == 1
    assert "replica-1" not in out
    assert cluster.entered and cluster.exited
