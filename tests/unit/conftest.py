"""Fixtures for unit tests: in-process replicas on loopback, the queue in memory.

``broker`` and ``make_client`` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from server.app import create_app
from server.config import Settings
from tests.fakes.memory_backend import FlakyBroker, memory_backend
from tests.helpers.clients import TEST_SECRET
from tests.helpers.in_process import Replica, StartReplica


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        # Dev mode refuses a JWT secret (no production secret next to dev mode).
        secret = None if overrides.get("auth_mode") == "dev" else TEST_SECRET
        values: dict[str, Any] = {"jwt_secret": secret, "instance_id": "unit-replica"}
        values.update(overrides)
        return Settings(**values)
    return make


@pytest.fixture
async def start_replica(broker: FlakyBroker, make_settings: Callable[..., Settings]
                        ) -> AsyncIterator[StartReplica]:
    """Factory: start a replica in this process on a free loopback port.

    ``queue=True`` (default) joins the test's shared memory broker, like replicas
    sharing Redis (without recovery); ``queue=False`` runs the embedded default, on a memory
    backend of its own with recovery, as `make dev` does.
    """
    servers: list[TestServer] = []

    async def start(*, queue: bool = True, **overrides: Any) -> Replica:
        overrides.setdefault("instance_id", f"unit-replica-{len(servers) + 1}")
        app = create_app(make_settings(**overrides), backend=memory_backend(broker) if queue else None)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Replica(app=app, url=str(server.make_url("")).rstrip("/"))

    yield start
    for server in reversed(servers):
        await server.close()
