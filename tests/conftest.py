"""Fixtures shared by the suites that run real processes (integration and e2e)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.cluster import Cluster
from tests.helpers.processes import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server owned by the test session (the machine's own Redis is left alone)."""
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def start_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory for a test's own replicas, stopped after the test.

    ``start_cluster(2, redis=own_redis, DUPLICATE_CONNECTION_POLICY="replace")``
    """
    started: list[Cluster] = []

    def start(count: int = 3, *, redis: RedisServer | None = None, **env: str) -> Cluster:
        started.append(Cluster.start((redis or redis_server).url, tmp_path, count, **env))
        return started[-1]

    yield start
    for one in started:
        one.stop()
