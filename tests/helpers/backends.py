"""Replica and emitter backends opened straight from ``open_backend``, for tests of the Redis parts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.backends import Backend, open_backend

OpenReplica = Callable[..., Awaitable[Backend]]


@contextlib.asynccontextmanager
async def replica_backends(url: str, channel: str, **options: Any) -> AsyncIterator[OpenReplica]:
    """``open_one(instance_id="replica", **more_options)``: a replica's backend, registered by a
    heartbeat and reading its inbox, as the app opens it; all are closed on the way out."""
    opened: list[Backend] = []

    async def open_one(instance_id: str = "replica", **more: Any) -> Backend:
        backend = open_backend(url, channel=channel, instance_id=instance_id, **{**options, **more})
        opened.append(backend)
        await backend.transport.subscribe(channel)
        await backend.presence.heartbeat()
        return backend

    yield open_one
    for backend in opened:
        await backend.presence.close()
        await backend.transport.close()


@contextlib.asynccontextmanager
async def emitter_backend(url: str, channel: str, **options: Any) -> AsyncIterator[Backend]:
    """An emitter's backend: it sends, never reads (no session store of its own)."""
    backend = open_backend(url, channel=channel, instance_id="emitter", replica=False, **options)
    yield backend
    await backend.transport.close()
