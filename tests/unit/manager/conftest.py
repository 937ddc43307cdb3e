"""Fixtures for the queue tests: managers on the test's memory broker, connected users.

Everything here is built per test (the ``broker`` fixture comes from
``tests/unit/conftest.py``); nothing is kept at module level.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import socketio

from kindmap_realtime.limits import DEFAULT_CHANNEL
from server.http.app_keys import MANAGER, METRICS, SIO
from server.manager.client_manager import QueueManager
from server.metrics import Metrics
from tests.fakes.memory_backend import FlakyBroker, flaky_transport
from tests.helpers.clients import MakeClient, RecordingClient, connected
from tests.helpers.in_process import Replica, StartReplica

CHANNEL = DEFAULT_CHANNEL  # the channel start_replica's replicas use
MANAGER_LOGGER = "server.manager.client_manager"
PUBLISHER_LOGGER = "kindmap_realtime.publisher"  # the manager publishes with a Publisher




def metric(metrics: Metrics, name: str, **labels: str) -> float:
    """The current value of one sample of ``metrics`` (0 for a series never touched)."""
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def dropped(metrics: Metrics, reason: str) -> float:
    return metric(metrics, "kindmap_messages_dropped_total", reason=reason)


def published(metrics: Metrics) -> float:
    return metric(metrics, "kindmap_messages_published_total")


def received(metrics: Metrics) -> float:
    return metric(metrics, "kindmap_messages_received_total")


def raw(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


@pytest.fixture
async def make_manager(broker: FlakyBroker) -> AsyncIterator[Callable[..., QueueManager]]:
    """Factory: a ``QueueManager`` on the test's broker with its own ``Metrics``; all closed after."""
    managers: list[QueueManager] = []

    def make(**options: Any) -> QueueManager:
        options.setdefault("channel", CHANNEL)
        options.setdefault("metrics", Metrics())
        manager = QueueManager(flaky_transport(broker), **options)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.close()


@pytest.fixture
async def make_server_manager(make_manager: Callable[..., QueueManager]
                              ) -> Callable[..., Awaitable[QueueManager]]:
    """Factory: a started listening manager attached to a real ``socketio.AsyncServer`` (no HTTP)."""
    async def make(**options: Any) -> QueueManager:
        manager = make_manager(**options)
        socketio.AsyncServer(client_manager=manager, async_mode="aiohttp")
        await manager.start()
        return manager
    return make


@dataclass
class Connected:
    """A user's socket on an in-process replica, and that replica's parts."""

    client: RecordingClient
    sid: str
    manager: QueueManager
    metrics: Metrics
    sio: socketio.AsyncServer


@pytest.fixture
def connect_user(start_replica: StartReplica, make_client: MakeClient) -> Callable[..., Awaitable[Connected]]:
    """Factory: connect ``user`` to ``replica`` (a new replica when not given)."""
    async def connect(user: str = "alice", *, replica: Replica | None = None) -> Connected:
        replica = replica or await start_replica()
        client = await connected(make_client, replica, user)
        welcome = client.received("connected")[0]
        manager = replica.app[MANAGER]
        assert isinstance(manager, QueueManager)
        return Connected(client=client, sid=welcome["sid"], manager=manager, metrics=replica.app[METRICS],
                         sio=replica.app[SIO])
    return connect
