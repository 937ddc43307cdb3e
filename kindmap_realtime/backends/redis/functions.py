"""The routing library (``routing.lua``) as Redis Functions: loaded by replicas, called by everyone.

Replicas load the library (``FUNCTION LOAD``) when they reach Redis, and again whenever
Redis answers that a function is missing (Redis restarted, a new Redis Cluster
master). Emitters only call (``FCALL``): their ACL user may not load code, so it can
run no Lua but ours. Function names carry the library's version, a hash of its
source, so replicas and emitters of two versions never call each other's code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, MovedError, ResponseError

__all__ = ["LIBRARY", "VERSION", "Functions", "FunctionsMissingError", "function_name", "is_missing", "unpacked"]

_SOURCE = Path(__file__).with_name("routing.lua").read_text()
VERSION = hashlib.sha1(_SOURCE.encode()).hexdigest()[:12]
LIBRARY = _SOURCE.replace("@V", VERSION)


def function_name(name: str) -> str:
    """The name this version's library gives function ``name`` (``send``: ``kindmap_send_<version>``)."""
    return f"kindmap_{name}_{VERSION}"


def is_missing(error: BaseException) -> bool:
    """Whether Redis answered that the function called is not loaded."""
    return isinstance(error, ResponseError) and "function not found" in str(error).lower()


class FunctionsMissingError(ResponseError):
    """This version's routing functions are not in Redis and this client may not load them."""

    def __init__(self) -> None:
        super().__init__(f"the routing functions of version {VERSION} are not loaded in Redis: a replica of "
                         "this version loads them when it connects (after a Redis restart, within a second)")


class Functions:
    """Calls this version's functions through ``client``.

    :param loads: a replica's (it loads the library when a function is missing); an
        emitter's raises ``FunctionsMissingError`` instead.
    """

    def __init__(self, client: aioredis.Redis | RedisCluster, *, loads: bool) -> None:
        self._client = client
        self.loads = loads

    async def load(self) -> None:
        """Load the library (on every master of a cluster); one already loaded is left as it is."""
        try:
            await self._client.function_load(LIBRARY)
        except ResponseError as exc:
            if "already exists" not in str(exc):
                raise

    async def call(self, name: str, keys: Sequence[str | bytes], args: Sequence[Any], *,
                   read_only: bool = False) -> Any:
        """``FCALL`` (``FCALL_RO`` when ``read_only``) function ``name`` of this version."""
        command = self._client.fcall_ro if read_only else self._client.fcall
        try:
            return await command(function_name(name), len(keys), *keys, *args)
        except ResponseError as exc:
            if not is_missing(exc):
                raise
        await self.reload()
        return await command(function_name(name), len(keys), *keys, *args)

    async def call_and_wait(self, node: aioredis.Redis, name: str, keys: Sequence[str | bytes],
                            args: Sequence[Any], *, timeout_ms: int) -> tuple[Any, int | None]:
        """On a cluster: ``FCALL`` function ``name``, then ``WAIT 1 timeout_ms``, both on one connection
        of ``node`` (a client of the master of the keys' slot: the wait covers this call's writes);
        the reply, and how many replicas confirmed them. A call redirected (its slot is moving) is
        made again through the cluster client, which follows the redirection, and not waited for
        (``None``)."""
        try:
            return await _call_and_wait(node, [function_name(name), len(keys), *keys, *args], timeout_ms)
        except (MovedError, AskError):
            return await self.call(name, keys, args), None
        except ResponseError as exc:
            if not is_missing(exc):
                raise
        await self.reload()
        return await _call_and_wait(node, [function_name(name), len(keys), *keys, *args], timeout_ms)

    async def reload(self) -> None:
        """After Redis answered that a function is missing: load, or say why this client cannot."""
        if not self.loads:
            raise FunctionsMissingError()
        await self.load()


async def _call_and_wait(node: aioredis.Redis, fcall: list[Any], timeout_ms: int) -> tuple[Any, int]:
    pipeline = node.pipeline(transaction=False)
    pipeline.execute_command("FCALL", *fcall)
    pipeline.execute_command("WAIT", 1, timeout_ms)
    reply, replicas = await pipeline.execute()
    return reply, int(replicas)


def unpacked(item: bytes) -> tuple[bytes, str | None]:
    """A message the routing functions delivered (to an inbox, or published on a shard channel):
    an envelope, or ``@<offset> <envelope>`` for one stored for recovery (an envelope starts with
    ``{`` or a hex signature). An offset not of our shape is left off: the envelope is checked as
    any other, and a client never gets an offset it cannot resume from."""
    if item[:1] == b"@":
        offset, _, data = item[1:].partition(b" ")
        return data, offset.decode() if _OFFSET.fullmatch(offset) else None
    return item, None


_OFFSET = re.compile(rb"[0-9]{1,20}-[0-9]{1,20}")
