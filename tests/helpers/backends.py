"""Replica and emitter backends opened as the app and the emitter open them, for tests of the backends,
and the steps those tests take through the backend interfaces (sockets with sessions, sends).

``store`` is what the backends share: a Redis URL (``open_backend``), or a ``MemoryBroker``
(``open_memory_backend``), on which backends act as replicas sharing one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kindmap_realtime.backends import Backend, SessionStore, open_backend
from kindmap_realtime.backends.base import Claim, Received, Routed, Session
from kindmap_realtime.backends.memory import MemoryBroker, open_memory_backend

OpenReplica = Callable[..., Awaitable[Backend]]
Store = str | MemoryBroker


def _open(store: Store, channel: str, instance_id: str, **options: Any) -> Backend:
    if isinstance(store, MemoryBroker):
        return open_memory_backend(store, channel=channel, instance_id=instance_id, **options)
    return open_backend(store, channel=channel, instance_id=instance_id, **options)


@contextlib.asynccontextmanager
async def replica_backends(store: Store, channel: str, **options: Any) -> AsyncIterator[OpenReplica]:
    """``open_one(instance_id="replica", **more_options)``: a replica's backend, registered by a
    heartbeat and reading its messages, as the app opens it; all are closed on the way out."""
    opened: list[Backend] = []

    async def open_one(instance_id: str = "replica", **more: Any) -> Backend:
        backend = _open(store, channel, instance_id, **{**options, **more})
        opened.append(backend)
        await backend.transport.subscribe(channel)
        await backend.presence.heartbeat()
        return backend

    yield open_one
    for backend in opened:
        await backend.presence.close()
        await backend.transport.close()


@contextlib.asynccontextmanager
async def emitter_backend(store: Store, channel: str, **options: Any) -> AsyncIterator[Backend]:
    """An emitter's backend: it sends, never reads (no session store of its own)."""
    backend = _open(store, channel, "emitter", replica=False, **options)
    yield backend
    await backend.transport.close()


def sessions_of(backend: Backend) -> SessionStore:
    assert backend.sessions is not None, "this backend was opened without a recovery window"
    return backend.sessions


async def send(sender: Backend, channel: str, user: str, data: bytes, *, volatile: bool = False) -> Routed:
    return await sender.transport.publish_to_user(channel, user, data, volatile=volatile)


async def stored(sender: Backend, channel: str, user: str, count: int, *, start: int = 0) -> list[str]:
    """Send ``count`` messages to an offline user with a session; their offsets."""
    offsets = []
    for n in range(start, start + count):
        routed = await send(sender, channel, user, b"m%d" % n)
        assert routed.status == "stored" and routed.offset is not None, routed
        offsets.append(routed.offset)
    return offsets


async def stored_while_online(sender: Backend, channel: str, user: str, count: int) -> list[str]:
    """``count`` messages stored (and sent) to a user who is online; their offsets."""
    offsets = []
    for n in range(count):
        routed = await send(sender, channel, user, b"live %d" % n)
        assert routed.status == "sent" and routed.offset is not None
        offsets.append(routed.offset)
    return offsets


async def read_history(replica: Backend, user: str, start: str) -> list[list[tuple[str, bytes]]]:
    return [page async for page in sessions_of(replica).history(user, start)]


async def next_received(replica: Backend, timeout: float = 5.0) -> Received:
    async with asyncio.timeout(timeout), contextlib.aclosing(replica.transport.messages()) as messages:
        async for received in messages:
            return received
    raise AssertionError("the stream of messages ended")


def claimed(result: Claim | str) -> Claim:
    assert isinstance(result, Claim), result
    return result


def offset_after(offset: str, steps: int = 1) -> str:
    generation, _, sequence = offset.partition("-")
    return f"{generation}-{int(sequence) + steps}"


async def live_session(open_replica: OpenReplica, user: str, sid: str = "sid-1",
                       replica: Backend | None = None) -> tuple[Backend, Session]:
    """A replica holding socket ``sid`` of ``user``, with a session that its presence keeps alive."""
    replica = replica or await open_replica()
    session = await sessions_of(replica).open(user, sid)
    await replica.presence.add(user, sid, session)
    return replica, session


async def lost_session(open_replica: OpenReplica, user: str, sid: str = "sid-1",
                       replica: Backend | None = None) -> tuple[Backend, Session]:
    """As ``live_session``, but its connection was lost: recoverable for the window, the user offline."""
    replica, session = await live_session(open_replica, user, sid, replica)
    await replica.presence.remove(user, sid, session, keep=True)
    return replica, session


def kicks(replica: Backend) -> list[str]:
    """The sids ``replica``'s presence disconnects as taken over elsewhere, as they come."""
    kicked: list[str] = []

    async def on_taken(sid: str) -> None:
        kicked.append(sid)

    replica.presence.on_taken(on_taken)
    return kicked
