"""The official Engine.IO and Socket.IO protocol test suites (tests/protocol/node, see README.md)
run with mocha against a real replica: socket.io-client relies on exactly this wire behaviour."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable

import pytest

from server.sio.packet_guard import HARD_CAP_FACTOR
from tests.helpers.cluster import Cluster

from .conftest import SUITES_DIR

pytestmark = pytest.mark.integration

MAX_PAYLOAD_BYTES = 65536
# python-engineio's defaults, which the replica keeps; its handshake must announce them.
PING_INTERVAL_MS = 25_000
PING_TIMEOUT_MS = 20_000
# The reference server's connectTimeout: the suite waits for a session that never connects to close.
CONNECT_TIMEOUT_SECONDS = 1
SUITE_TIMEOUT_SECONDS = 45
# Per case: generous for a loaded CI machine.
MOCHA_OPTIONS = ["--exit", "--forbid-only", "--timeout", "10000", "--reporter", "spec"]


@pytest.mark.parametrize("suite", ["engine.io-test-suite.js", "socket.io-test-suite.js"])
def test_protocol_suite_passes_against_a_replica(suite: str, start_cluster: Callable[..., Cluster]) -> None:
    [replica] = start_cluster(1, AUTH_MODE="dev", JWT_SECRET="", SERVER_API_KEY="",
                              MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD_BYTES),
                              CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT_SECONDS)).replicas
    env = {
        **os.environ,
        "PROTOCOL_SUITE_URL": replica.url,
        "PROTOCOL_SUITE_PING_INTERVAL": str(PING_INTERVAL_MS),
        "PROTOCOL_SUITE_PING_TIMEOUT": str(PING_TIMEOUT_MS),
        # Engine.IO's limit is the hard cap; the Socket.IO message limit below it is the app's.
        "PROTOCOL_SUITE_MAX_PAYLOAD": str(MAX_PAYLOAD_BYTES * HARD_CAP_FACTOR),
        # The suites predate connection state recovery and expect a CONNECT reply of exactly {"sid"}:
        # their client is one that does not speak it (tests/integration/test_recovery.py covers the pid).
        "PROTOCOL_SUITE_AUTH": json.dumps({"user_id": "protocol-suite", "recovery": False}),
    }
    mocha = SUITES_DIR / "node_modules" / "mocha" / "bin" / "mocha"
    run = subprocess.run(["node", str(mocha), *MOCHA_OPTIONS, suite], cwd=SUITES_DIR, env=env, capture_output=True,
                         text=True, timeout=SUITE_TIMEOUT_SECONDS)
    assert run.returncode == 0, f"mocha {suite} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
