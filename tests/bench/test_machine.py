"""bench/machine.py: the software a run measured, Node's included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.machine import node_versions


def test_node_and_the_installed_node_packages_are_named_with_their_versions(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    manifest = tmp_path / "node_modules" / "@socket.io" / "redis-adapter" / "package.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"name": "@socket.io/redis-adapter", "version": "8.3.0"}))

    versions = node_versions(tmp_path)

    assert versions.pop("@socket.io/redis-adapter (npm)") == "8.3.0"  # the others are not installed there
    assert list(versions) == ["node"] and versions["node"][0].isdigit()


def test_without_node_there_is_nothing_to_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("bench.machine.shutil.which", lambda name: None)

    assert node_versions(tmp_path) == {}
