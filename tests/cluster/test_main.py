"""``python -m cluster``: arguments, start-up failures and processes that end."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import NoReturn

import pytest

from cluster import __main__ as cli


@pytest.mark.parametrize(("args", "message"), [
    (["--replicas", "0"], "--replicas must be between 1 and 16"),
    (["--replicas", "17"], "--replicas must be between 1 and 16"),
    (["--port", "70000"], "--port must be between 0 and 65535"),
    (["--replicas", "three"], "invalid int value"),
])
def test_bad_arguments_exit_2_with_the_reason(args: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_cluster_that_cannot_start_exits_1_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(**options: object) -> NoReturn:
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
    """Stands in for LocalCluster: records being entered and left."""

    def __init__(self, processes: list[FakeProcess]) -> None:
        self.processes = processes
        self.entered = self.exited = False

    def describe(self) -> str:
        return "  described"

    def __enter__(self) -> FakeCluster:
        self.entered = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.exited = True


def interrupted_after(rounds: int) -> Callable[[], None]:
    """A pause for the watch loop that raises KeyboardInterrupt (Ctrl-C) in round ``rounds``."""
    count = 0

    def pause() -> None:
        nonlocal count
        count += 1
        if count == rounds:
            raise KeyboardInterrupt

    return pause


def test_a_process_that_ends_on_its_own_is_reported_once(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = FakeCluster([FakeProcess("replica-1", [None]), FakeProcess("replica-2", [None, -9])])

    with pytest.raises(KeyboardInterrupt):
        cli._run(cluster, pause=interrupted_after(4))  # type: ignore[arg-type]

    out = capsys.readouterr().out
    assert out.startswith("KindMap cluster is up:\n  described\nCtrl-C stops everything.\n")
    assert out.count("replica-2 exited with code -9; see /tmp/replica-2.log") == 1
    assert "replica-1" not in out
    assert cluster.entered and cluster.exited


def test_signal_handlers_are_restored_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    before = {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS}
    monkeypatch.setattr(cli, "LocalCluster", lambda **options: FakeCluster([]))
    monkeypatch.setattr(cli, "_run", lambda cluster: signal.raise_signal(signal.SIGHUP))

    assert cli.main(["--replicas", "1"]) == 0
    assert {sig: signal.getsignal(sig) for sig in cli.STOP_SIGNALS} == before
