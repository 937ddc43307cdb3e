"""Replica and emitter backends opened as the app and the emitter open them, for tests of the backends.

``store`` is what the backends share: a Redis URL (``open_backend``), or a ``MemoryBroker``
(``open_memory_backend``), on which backends act as replicas sharing one Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.backends import Backend, open_backend
from server.backends.memory import MemoryBroker, open_memory_backend

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
