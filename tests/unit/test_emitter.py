"""server/emitter.py on an in-memory backend: the emitter builds from the same backend parts as a replica."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.app_keys import MANAGER
from server.emitter import Emitter
from server.errors import UserNotConnectedError
from tests.fakes.memory_backend import MemoryBroker, memory_backend
from tests.helpers.clients import RecordingClient, make_token


async def test_emitter_on_the_replicas_backend_reaches_a_connected_user(
        broker: MemoryBroker, start_replica: Callable[..., Awaitable[Any]],
        make_client: Callable[..., RecordingClient]) -> None:
    replica = await start_replica()
    client = make_client()
    await client.connect(replica.url, auth={"token": make_token("alice")})

    async with Emitter(backend=memory_backend(broker)) as emitter:
        await emitter.send_to_user("alice", "arrival", {"station": "City Hall"})

    assert await client.wait_for("arrival") == {"station": "City Hall"}


async def test_emitter_refuses_a_user_connected_nowhere(broker: MemoryBroker,
                                                        start_replica: Callable[..., Awaitable[Any]]) -> None:
    replica = await start_replica()

    async with Emitter(backend=memory_backend(broker)) as emitter:
        with pytest.raises(UserNotConnectedError):
            await emitter.send_to_user("nobody", "arrival", {})
    assert replica.app[MANAGER].transport.inbox.empty()  # the one round trip addressed nobody


def test_emitter_needs_a_url_or_a_backend() -> None:
    with pytest.raises(ValueError, match="redis_url or backend"):
        Emitter()
