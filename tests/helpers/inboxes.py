"""The replicas' inboxes, watched and written as a Redis neighbour would.

Replicas receive envelopes in their own Redis list (``kindmap_realtime.backends.redis``) and drop
what they have read at once, so what was sent there is watched as it is appended:
through ``MONITOR``, which shows every command the routing functions run. These helpers
let a test see what was sent to replicas, and forge or replay envelopes the way anyone
with access to Redis could.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Awaitable, Callable

from redis import asyncio as aioredis

from kindmap_realtime.backends.redis.keys import inbox_key, registry_key

__all__ = ["inbox_keys", "inject", "record_next", "record_until"]

_ARGUMENT = re.compile(rb'"((?:[^"\\]|\\.)*)"')


async def inbox_keys(redis: aioredis.Redis, channel: str) -> list[bytes]:
    """The inboxes of the replicas registered on ``channel`` (whether or not anything was sent yet)."""
    processes: list[bytes] = await redis.zrange(registry_key(channel), 0, -1)  # type: ignore[assignment]
    return [inbox_key(channel, process.decode()).encode() for process in processes]


async def record_until(redis: aioredis.Redis, channel: str, action: Callable[[], Awaitable[object]],
                       until: Callable[[bytes], bool], timeout: float = 5.0) -> list[bytes]:
    """Run ``action`` and return the envelopes appended to any inbox on ``channel`` from then on, up
    to the first for which ``until`` is true."""
    prefix = inbox_key(channel, "").encode()
    monitor = redis.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    await monitor.connect()
    try:
        await monitor.send_command("MONITOR")
        assert await monitor.read_response() in (b"OK", "OK")
        await action()
        seen: list[bytes] = []
        async with asyncio.timeout(timeout):
            while True:
                line = await monitor.read_response()
                arguments = [codecs.escape_decode(raw)[0] for raw in _ARGUMENT.findall(line)]
                if len(arguments) == 3 and arguments[0].upper() == b"RPUSH" and arguments[1].startswith(prefix):
                    element = arguments[2]
                    envelope = element.partition(b" ")[2] if element.startswith(b"@") else element
                    seen.append(envelope)
                    if until(envelope):
                        return seen
    finally:
        await monitor.disconnect()


async def record_next(redis: aioredis.Redis, channel: str, action: Callable[[], Awaitable[object]],
                      timeout: float = 5.0) -> bytes:
    """Run ``action`` and return the first envelope it sent to any replica."""
    assert await inbox_keys(redis, channel), f"no replica is registered on {channel}"
    return (await record_until(redis, channel, action, lambda _: True, timeout))[0]


async def inject(redis: aioredis.Redis, channel: str, data: bytes | str) -> int:
    """Append ``data`` to every inbox on ``channel``, as a forger could; returns how many."""
    keys = await inbox_keys(redis, channel)
    for key in keys:
        await redis.rpush(key, data)
    return len(keys)
