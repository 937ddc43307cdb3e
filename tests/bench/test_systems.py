"""bench/systems.py: what runs each system, and what a run of the Node systems needs installed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import systems
from bench.cluster import SystemUnderTest
from bench.systems import SYSTEMS, missing_tools


def test_the_node_systems_run_one_replica_script_with_their_adapter_and_one_emitter_script() -> None:
    classic, sharded = SYSTEMS["node-classic"], SYSTEMS["node-sharded"]

    assert classic.replica == sharded.replica == ("node", str(systems.NODE_DIR / "server.js"))
    assert classic.emitter == sharded.emitter == ("node", str(systems.NODE_DIR / "emitter.js"))
    assert (classic.env, sharded.env) == ({"SOCKETIO_ADAPTER": "classic"}, {"SOCKETIO_ADAPTER": "sharded"})
    assert [name for name, system in SYSTEMS.items() if system.node] == ["node-classic", "node-sharded"]


def test_a_system_under_test_starts_its_replicas_with_the_systems_command(tmp_path: Path) -> None:
    system = SystemUnderTest("node-sharded", 2, tmp_path)

    assert [replica.argv for replica in system.replicas] == [list(SYSTEMS["node-sharded"].replica)] * 2
    assert [replica.name for replica in system.replicas] == ["node-sharded-1", "node-sharded-2"]


def test_python_systems_need_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.systems.shutil.which", lambda name: None)

    assert missing_tools(["baseline", "ours"]) is None


def test_node_systems_need_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.systems.shutil.which", lambda name: None)

    assert missing_tools(["ours", "node-sharded"]) == (
        "node is not installed (apt-get install nodejs npm), needed by the node-* systems")


def test_node_systems_need_their_packages_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("bench.systems.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(systems, "NODE_DIR", tmp_path)

    assert missing_tools(["node-classic"]) == (
        f"the node-* systems' packages are not installed: make install (npm ci in {tmp_path})")
    (tmp_path / "node_modules").mkdir()
    assert missing_tools(["node-classic"]) is None


def test_ours_at_a_commit_runs_its_replica_and_emitter_from_that_tree_with_this_interpreter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    older = systems.ours_at_system(tmp_path)
    monkeypatch.setitem(SYSTEMS, "ours-0123abc", older)

    assert older.replica == (sys.executable, "-P", "-m", "server")  # -P: this checkout stays off sys.path
    assert older.emitter == (sys.executable, "-P", "-m", "bench.emitter")
    assert (older.publisher, older.volatile, older.python_env) == ("ours", True, {"PYTHONPATH": str(tmp_path)})
    system = SystemUnderTest("ours-0123abc", 1, tmp_path / "logs")
    assert system.replicas[0].argv == list(older.replica)
    assert system.replicas[0]._env["PYTHONPATH"] == str(tmp_path)
    assert all("PYTHONPATH" not in s.python_env for name, s in SYSTEMS.items() if name != "ours-0123abc")


def test_ours_at_checks_a_commit_out_for_the_run_and_removes_it_after() -> None:
    commit = systems.commit_of("HEAD")
    with systems.ours_at("HEAD") as name:
        tree = SYSTEMS[name].tree
        assert name == f"ours-{commit}"
        assert tree is not None and (tree / "server" / "__init__.py").is_file()
    assert name not in SYSTEMS
    assert not tree.exists()


def test_ours_at_a_commit_git_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="git knows no commit 'no-such-ref'"):
        systems.commit_of("no-such-ref")
