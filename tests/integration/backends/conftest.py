"""The backends' contract: every test of this folder runs against the memory backend, one Redis
and a Redis Cluster alike, through the interfaces of ``kindmap_realtime/backends/base.py`` only.

Replicas of one test share one store (a ``MemoryBroker``, or the Redis), as replicas of one
deployment do; the sender is an emitter's backend there (on memory, one on the same broker).
What only one backend does -- Redis neighbours, heartbeats that repair, the memory backend's
bounds -- is tested beside it (``tests/integration/test_redis_*.py``, ``tests/unit/kindmap_realtime/backends/memory/``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kindmap_realtime.backends import Backend
from kindmap_realtime.backends.memory import MemoryBroker
from tests.helpers.backends import OpenReplica, Store, emitter_backend, replica_backends

WINDOW = 30.0  # seconds; no test waits for it unless it sets its own
MAX_MESSAGES = 10
MAX_SESSIONS = 4
MAX_SOCKETS = 3


def options() -> dict[str, Any]:
    return {"recovery_window": WINDOW, "recovery_max_messages": MAX_MESSAGES, "max_sessions": MAX_SESSIONS,
            "max_sockets": MAX_SOCKETS}


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return MemoryBroker()
    server = request.getfixturevalue("redis_server" if request.param == "redis" else "redis_cluster")
    return str(server.url)


@pytest.fixture
def channel() -> str:
    return f"kindmap_contract_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def user() -> str:
    return f"rider-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def open_replica(store: Store, channel: str) -> AsyncIterator[OpenReplica]:
    """Factory: a replica's backend with recovery on, listening (``open_replica("name", **options)``)."""
    async with replica_backends(store, channel, **options()) as open_one:
        yield open_one


@pytest.fixture
async def sender(store: Store, channel: str) -> AsyncIterator[Backend]:
    """An emitter's backend (no session store of its own): what it sends is stored all the same."""
    async with emitter_backend(store, channel) as backend:
        yield backend
