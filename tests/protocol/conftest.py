"""The protocol suites need node and `npm ci` in tests/protocol/node (`make install` runs it)."""

from __future__ import annotations

import shutil

import pytest

from cluster.processes import REPO_ROOT

SUITES_DIR = REPO_ROOT / "tests" / "protocol" / "node"


@pytest.fixture(scope="session", autouse=True)
def _suites_installed() -> None:
    if shutil.which("node") is None or not (SUITES_DIR / "node_modules" / "mocha").is_dir():
        pytest.fail(f"the protocol suites need node and `npm ci` in {SUITES_DIR}; run `make install`")
