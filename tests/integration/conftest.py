"""Fixtures for integration tests: a real redis-server, real replica processes.

Every test gets its own Socket.IO channel, so replicas and messages of one test
never meet those of another even on a shared Redis.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.processes import RedisServer, Replica
from tests.helpers.clients import TEST_SECRET, RecordingClient
from tests.helpers.node_client import NODE_DIR, NodeClient

API_KEY = "integration-api-key-0123456789"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _tools_installed() -> None:
    missing = [tool for tool in ("redis-server", "node") if shutil.which(tool) is None]
    if missing or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"integration tests need redis-server, node and `npm ci` in {NODE_DIR} (missing: {missing}); "
                    "run `make test`, which installs them")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server owned by the test session (the machine's own Redis is left alone)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server owned by one test, which may stop and restart it."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


def replica_env(redis_url: str, channel: str, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SOCKETIO_CHANNEL": channel, "JWT_SECRET": TEST_SECRET,
            "SERVER_API_KEY": API_KEY, "AUTH_MODE": "jwt", "LOG_LEVEL": "INFO", **extra}


class Cluster:
    def __init__(self, redis_url: str, channel: str, replicas: list[Replica]) -> None:
        self.redis_url = redis_url
        self.channel = channel
        self.replicas = replicas

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def _start_cluster(redis_url: str, log_dir: Path, count: int, **env: str) -> Cluster:
    channel = f"kindmap_it_{uuid.uuid4().hex[:10]}"
    replicas = [Replica(instance_id=f"replica-{i + 1}", env=replica_env(redis_url, channel, **env), log_dir=log_dir)
                for i in range(count)]
    cluster = Cluster(redis_url, channel, replicas)
    try:
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three replicas shared by the tests of one module (each test uses its own user ids)."""
    started = _start_cluster(redis_server.url, tmp_path_factory.mktemp("replicas"), 3)
    yield started
    started.stop()


@pytest.fixture
def start_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory for a test's own replicas.

    ``start_cluster(2, redis=own_redis, DUPLICATE_CONNECTION_POLICY="replace")``
    """
    started: list[Cluster] = []

    def start(count: int = 3, *, redis: RedisServer | None = None, **env: str) -> Cluster:
        started.append(_start_cluster((redis or redis_server).url, tmp_path, count, **env))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., RecordingClient]]:
    clients: list[RecordingClient] = []

    def make(**options: Any) -> RecordingClient:
        options.setdefault("reconnection", False)
        clients.append(RecordingClient(**options))
        return clients[-1]

    yield make
    for client in clients:
        await client.disconnect()


@pytest.fixture
async def node_client() -> AsyncIterator[Callable[..., Any]]:
    """Factory: start a Node socket.io-client v4 against a URL."""
    clients: list[NodeClient] = []

    async def start(url: str, auth: dict[str, Any], transports: list[str] | None = None) -> NodeClient:
        client = NodeClient()
        clients.append(client)
        await client.start(url, auth, transports)
        return client

    yield start
    for client in clients:
        await client.stop()


def unique_user(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
