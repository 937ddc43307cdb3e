"""Suite markers, the in-memory broker of the unit tests, and fixtures shared by the suites
that run real processes (integration and e2e)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from cluster.processes import REPO_ROOT, RedisServer
from tests.fakes.memory_backend import FlakyBroker
from tests.helpers.clients import MakeClient, RecordingClient
from tests.helpers.cluster import Cluster
from tests.helpers.raw_client import OpenRaw, RawClient

_MARKED_SUITES = ("integration", "e2e")

# CI judges a change on the same property-test examples every run (HYPOTHESIS_PROFILE=ci in
# .ci/run); a developer's run draws new ones, which is how the guard and codec bugs were found.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test of tests/integration and tests/e2e with its suite (``-m "not e2e"``)."""
    for item in items:
        suite = item.path.relative_to(REPO_ROOT / "tests").parts[0]
        if suite in _MARKED_SUITES:
            item.add_marker(getattr(pytest.mark, suite))


@pytest.fixture
def broker() -> FlakyBroker:
    """The in-memory "Redis" shared by the in-process replicas of one test."""
    return FlakyBroker()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server owned by the test session (the machine's own Redis is left alone)."""
    server = RedisServer(work_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def start_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory for a test's own replicas, stopped after the test.

    ``start_cluster(2, redis=own_redis, DUPLICATE_CONNECTION_POLICY="replace")``
    """
    with contextlib.ExitStack() as started:
        def start(count: int = 3, *, redis: RedisServer | None = None, **env: str) -> Cluster:
            return started.enter_context(Cluster((redis or redis_server).url, tmp_path, count, **env))

        yield start


@pytest.fixture
async def open_raw() -> AsyncIterator[OpenRaw]:
    """Factory: an open raw Engine.IO session (``await open_raw(url, transport="polling")``)."""
    clients: list[RawClient] = []

    async def open_(url: str, *, transport: str = "websocket") -> RawClient:
        client = RawClient(url, transport=transport)
        clients.append(client)
        await client.open()
        return client

    yield open_
    for client in clients:
        await client.close()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """Factory: a recording Socket.IO client (no reconnection unless asked), shut down after the test."""
    clients: list[RecordingClient] = []

    def make(**options: Any) -> RecordingClient:
        options.setdefault("reconnection", False)
        clients.append(RecordingClient(**options))
        return clients[-1]

    yield make
    for client in clients:
        await client.disconnect()
