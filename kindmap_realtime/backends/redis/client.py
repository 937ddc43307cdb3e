"""Redis clients that fail fast: to one server, or to a Redis Cluster through any of its nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...compat.redis import HookedCluster
from ...errors import PublishError, QueueBusyError

__all__ = ["COMMAND_TIMEOUT", "CONNECT_TIMEOUT", "MAX_CONNECTIONS", "PoolExhaustedError", "answers", "connect_cluster",
           "connect_redis", "is_cluster", "sending", "without_retries"]

CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
# Commands in flight at once; more wait (up to COMMAND_TIMEOUT) for a free connection.
# A drain or a reconnect storm sends presence writes for hundreds of sockets together.
MAX_CONNECTIONS = 64
PING_TIMEOUT = 0.5

T = TypeVar("T")


class PoolExhaustedError(RedisConnectionError):
    """No pooled connection (or room in the auto-pipeline) came free in time: Redis is busy, not down.

    A ``ConnectionError`` still, so code that does not tell the two apart treats it as before.
    """


class _WaitingPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, telling a wait that timed out from a connection that failed.

    redis-py raises the same ``ConnectionError`` for both, and only the cause differs
    (``asyncio.TimeoutError`` for the wait); ``test_redis_parts`` checks that it still does.
    """

    async def get_connection(self, *args: object, **kwargs: object) -> aioredis.connection.AbstractConnection:
        try:
            connection: aioredis.connection.AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
                *args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                raise PoolExhaustedError(f"all {self.max_connections} Redis connections stayed busy") from exc
            raise
        return connection


def connect_redis(url: str, *, max_connections: int = MAX_CONNECTIONS,
                  pool_timeout: float = COMMAND_TIMEOUT) -> aioredis.Redis:
    """A command client that fails fast: one quick retry, then the error surfaces.

    redis-py's defaults retry with backoff for seconds, which would hide an
    outage from the caller that needs to know its message was not sent. Its
    default pool refuses the 101st concurrent command ("Too many connections");
    this one makes a burst queue for a connection instead, up to ``pool_timeout``,
    after which the command raises ``PoolExhaustedError`` (busy, not down).
    """
    pool = _WaitingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
    )
    return aioredis.Redis.from_pool(pool)


def without_retries(client: aioredis.Redis, name: str) -> aioredis.Redis:
    """A client to the same server whose connections never retry on their own,
    named ``name`` in Redis's ``CLIENT LIST``."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0), "client_name": name}
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class _FunctionsCluster(HookedCluster):
    """redis-py's cluster client, routing ``FCALL`` by its first key, as it routes ``EVALSHA``.

    redis-py finds the keys of an ``FCALL`` by asking a node (``COMMAND GETKEYS``) before
    every call: a second round trip per message. Every call of ours names keys of one slot
    (test_redis_cluster checks that a call takes one round trip).
    """

    def command_slot(self, command: str, *args: Any) -> int | None:
        if command.upper() in ("FCALL", "FCALL_RO") and len(args) > 2 and int(args[1]) > 0:
            return self.keyslot(args[2])
        return None


def connect_cluster(url: str, *, max_connections: int = MAX_CONNECTIONS) -> RedisCluster:
    """A Redis Cluster client from the URL of any node; it fails fast. redis-py's cluster client
    closes *every* connection it has before a retry, and after every fifth ``MOVED``: the commands
    of others in flight then fail (or break inside redis-py), and one that had run is run again on
    a retry (a message stored and sent twice, seen while resharding). So it never retries a command
    itself, and a ``MOVED`` only patches its slot map; redirections are still followed, and after
    a failed connection the next command reads the slot map again."""
    return _FunctionsCluster.from_url(url, max_connections=max_connections, socket_connect_timeout=CONNECT_TIMEOUT,
                                      socket_timeout=COMMAND_TIMEOUT, retry=Retry(NoBackoff(), 0),
                                      reinitialize_steps=0)


async def is_cluster(url: str) -> bool:
    """Whether ``url`` names a node of a Redis Cluster (the ``mode`` ``HELLO`` reports, which
    needs no more than ``+hello`` in an ACL); raises redis-py's errors."""
    probe = aioredis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT,
                                    retry=Retry(NoBackoff(), 0))
    try:
        reply = await probe.execute_command("HELLO")  # type: ignore[no-untyped-call]
    finally:
        await probe.aclose()
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    return fields.get(b"mode", fields.get("mode")) in (b"cluster", "cluster")


async def sending(command: Awaitable[T]) -> T:
    """Await a command that sends, its failure as the transports report it: ``QueueBusyError``
    when the pool stayed busy, ``PublishError`` when Redis failed."""
    try:
        return await command
    except PoolExhaustedError as exc:
        raise QueueBusyError(f"Redis is busy, retry shortly: {exc}") from exc
    except (RedisError, OSError) as exc:
        raise PublishError(f"Redis publish failed: {exc}") from exc


async def answers(client: aioredis.Redis | RedisCluster) -> bool:
    """Whether Redis answers a PING right now (never raises)."""
    try:
        return bool(await asyncio.wait_for(client.ping(), PING_TIMEOUT))
    except (TimeoutError, RedisError, OSError):
        return False
