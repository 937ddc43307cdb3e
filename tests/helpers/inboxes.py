"""The replicas' inbox streams, read and written as a Redis neighbour would.

Replicas receive envelopes in their own Redis stream (``server.backends.redis``);
these helpers let a test see what was sent there, and forge or replay envelopes
the way anyone with access to Redis could.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis

from server.backends.redis.keys import inbox_key, registry_key

__all__ = ["Positions", "entries_since", "inbox_keys", "inject", "positions", "record_next"]

Positions = dict[bytes, bytes]  # inbox key -> id of its newest entry


async def inbox_keys(redis: aioredis.Redis, channel: str) -> list[bytes]:
    """The inboxes of the replicas registered on ``channel`` (whether or not anything was sent yet)."""
    processes: list[bytes] = await redis.zrange(registry_key(channel), 0, -1)  # type: ignore[assignment]
    return [inbox_key(channel, process.decode()).encode() for process in processes]


async def positions(redis: aioredis.Redis, channel: str) -> Positions:
    """Where every inbox on ``channel`` ends now."""
    ends: Positions = {}
    for key in await inbox_keys(redis, channel):
        newest: list[tuple[bytes, Any]] = await redis.xrevrange(key, count=1)  # type: ignore[assignment]
        ends[key] = newest[0][0] if newest else b"0-0"
    return ends


async def entries_since(redis: aioredis.Redis, since: Positions, *, block_ms: int | None = None) -> list[bytes]:
    """The envelopes appended to the inboxes of ``since`` after those positions."""
    if not since:
        return []
    reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = await redis.xread(
        since, block=block_ms)  # type: ignore[arg-type, assignment]
    return [fields[b"m"] for _key, entries in reply or [] for _id, fields in entries]


async def record_next(redis: aioredis.Redis, channel: str, action: Callable[[], Awaitable[object]],
                      timeout: float = 5.0) -> bytes:
    """Run ``action`` and return the first envelope it sent to any replica."""
    before = await positions(redis, channel)
    assert before, f"no replica is registered on {channel}"
    await action()
    async with asyncio.timeout(timeout):
        while not (sent := await entries_since(redis, before, block_ms=500)):
            pass
    return sent[0]


async def inject(redis: aioredis.Redis, channel: str, data: bytes | str) -> int:
    """Append ``data`` to every inbox on ``channel``, as a forger could; returns how many."""
    keys = await inbox_keys(redis, channel)
    for key in keys:
        await redis.xadd(key, {"m": data})
    return len(keys)
