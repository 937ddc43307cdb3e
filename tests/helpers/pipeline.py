"""Commands for ``kindmap_realtime.backends.redis.pipeline.AutoPipeline``, packed as the transports pack theirs."""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as aioredis

from kindmap_realtime.backends.redis.pipeline import AutoPipeline
from tests.helpers.waiting import eventually

__all__ = ["blocked_call", "pack"]


def pack(*args: str | int) -> bytes:
    """One command in the Redis protocol."""
    parts = [str(arg).encode() for arg in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)


async def blocked_call(pipeline: AutoPipeline, redis: aioredis.Redis, key: str) -> asyncio.Task[list[Any]]:
    """A call in flight whose reply Redis holds back until ``key`` gets an element
    (``BLPOP``); returned once Redis holds it."""
    call = asyncio.ensure_future(pipeline.execute([pack("BLPOP", key, 0)]))

    async def held() -> bool:
        return any(client["cmd"] == "blpop" for client in await redis.client_list())

    await eventually(held, what="BLPOP held by Redis")
    return call
