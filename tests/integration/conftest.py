"""Fixtures for integration tests: real replica processes, python-socketio and Node clients.

``redis_server``, ``start_cluster`` and ``make_client`` come from tests/conftest.py. Every cluster
gets its own Socket.IO channel, so replicas and messages of one test never meet
those of another even on a shared Redis.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import LocalCluster
from cluster.processes import RedisClusterServers, RedisServer, nginx_binary
from tests.helpers.cluster import Cluster, local_cluster_east_of_utc, new_channel, replica_env
from tests.helpers.node_client import NODE_DIR, NodeClient, StartNodeClient
from tests.helpers.raw_engineio import OpenStubborn, StubbornClient


@pytest.fixture(scope="session", autouse=True)
def _tools_installed() -> None:
    missing = [tool for tool in ("redis-server", "node") if shutil.which(tool) is None]
    missing += [] if nginx_binary() else ["nginx"]
    if missing or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.fail(f"integration tests need redis-server, node, nginx and `npm ci` in {NODE_DIR} "
                    f"(missing: {missing}); run `bash .ci/run`, which installs them")


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server owned by one test, which may stop and restart it."""
    server = RedisServer(work_dir=tmp_path_factory.mktemp("own-redis"))
    server.start()
    yield server
    server.stop()


@contextlib.contextmanager
def _started_redis_cluster(work_dir: Path, *, replicas: int = 0) -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers(work_dir=work_dir, replicas=replicas)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A three-master Redis Cluster owned by the test session."""
    with _started_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as servers:
        yield servers


@pytest.fixture
def own_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A Redis Cluster owned by one test, which may restart its masters."""
    with _started_redis_cluster(tmp_path_factory.mktemp("own-redis-cluster")) as servers:
        yield servers


@pytest.fixture(scope="module")
def replicated_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three masters, each with a replica, shared by the tests of one module; a test that moves
    slots or fails a master over leaves every slot served and every master with a replica."""
    with _started_redis_cluster(tmp_path_factory.mktemp("replicated-cluster"), replicas=1) as servers:
        yield servers


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three replicas shared by the tests of one module (each test uses its own user ids), on
    one Redis and again on a Redis Cluster: the same tests hold in both modes."""
    redis = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
    with Cluster(redis.url, tmp_path_factory.mktemp("replicas"), 3, redis_mode=request.param) as started:
        yield started


@pytest.fixture(scope="module")
def nginx_cluster(redis_server: RedisServer) -> Iterator[LocalCluster]:
    """Three replicas behind a real Nginx that runs the production site configuration, in a
    zone other than UTC (their timestamps must be UTC all the same)."""
    env = replica_env(redis_server.url, new_channel())
    with local_cluster_east_of_utc(replicas=3, env=env, redis_url=redis_server.url) as cluster:
        yield cluster


@pytest.fixture
async def node_client() -> AsyncIterator[StartNodeClient]:
    """Factory: start a Node socket.io-client v4 against a URL."""
    clients: list[NodeClient] = []

    async def start(url: str, auth: dict[str, Any], transports: list[str] | None = None, *,
                    package: str = "socket.io-client") -> NodeClient:
        client = NodeClient()
        clients.append(client)
        await client.start(url, auth, transports, package=package)
        return client

    yield start
    for client in clients:
        await client.stop()



@pytest.fixture
async def open_stubborn() -> AsyncIterator[OpenStubborn]:
    """Factory: a ``StubbornClient`` connected to a URL with ``auth`` (``await open_stubborn(url, auth)``)."""
    clients: list[StubbornClient] = []

    async def open_(url: str, auth: dict[str, Any], *, refused: bool = False) -> StubbornClient:
        client = StubbornClient(url)
        clients.append(client)
        await client.connect(auth, refused=refused)
        return client

    yield open_
    for client in clients:
        await client.close()
