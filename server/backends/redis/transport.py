"""Plain Redis pub/sub (PUBLISH / SUBSCRIBE) as the queue transport."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator

from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...errors import PublishError, QueueBusyError, QueueUnavailableError
from ..base import QueueTransport

__all__ = ["PoolExhaustedError", "RedisTransport", "connect_redis"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 1.0
COMMAND_TIMEOUT = 2.0
PING_TIMEOUT = 0.5
# The listening connection is PINGed when idle; silent this long, it is presumed dead.
KEEPALIVE_INTERVAL = 1.0
KEEPALIVE_TIMEOUT = 3.0
# Commands in flight at once; more wait (up to COMMAND_TIMEOUT) for a free connection.
# A drain or a reconnect storm sends presence writes for hundreds of sockets together.
MAX_CONNECTIONS = 64


class PoolExhaustedError(RedisConnectionError):
    """No pooled connection came free in time: Redis is busy, not down.

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


def _without_retries(client: aioredis.Redis) -> aioredis.Redis:
    """A client to the same server whose connections never retry on their own."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


class RedisTransport(QueueTransport):
    """Publishes with a command client; listens on a dedicated pub/sub connection.

    The pub/sub connection has no automatic retry: when Redis goes away the
    ``messages()`` iterator raises at once, so the manager knows it is deaf and
    resubscribes on its own schedule. A connection that goes silent without
    closing (a dropped NAT entry, a partition) is caught by a keepalive: it is
    PINGed every ``KEEPALIVE_INTERVAL`` and dropped after ``KEEPALIVE_TIMEOUT``
    without a word from Redis.

    It owns the command client (``client``), which the presence and key check
    of the same backend share.
    """

    def __init__(self, url: str, *, max_connections: int = MAX_CONNECTIONS,
                 pool_timeout: float = COMMAND_TIMEOUT) -> None:
        self.client = connect_redis(url, max_connections=max_connections, pool_timeout=pool_timeout)
        self._sub_client = _without_retries(self.client)
        self._pubsub: aioredis.client.PubSub | None = None
        self._last_heard = 0.0

    async def connect(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._drop_pubsub()
        await self._sub_client.aclose(close_connection_pool=True)
        await self.client.aclose()

    async def publish(self, channel: str, data: bytes) -> int:
        try:
            return int(await self.client.publish(channel, data))
        except PoolExhaustedError as exc:
            raise QueueBusyError(f"Redis is busy, retry shortly: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise PublishError(f"Redis publish failed: {exc}") from exc

    async def subscribe(self, channel: str) -> None:
        await self._drop_pubsub()
        self._pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(channel)
        except (RedisError, OSError) as exc:
            await self._drop_pubsub()
            raise QueueUnavailableError(f"Redis subscribe failed: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(channel)
            except (RedisError, OSError):
                pass  # the connection is going away anyway
            await self._drop_pubsub()

    async def messages(self) -> AsyncGenerator[tuple[str, bytes], None]:
        pubsub = self._pubsub
        if pubsub is None:
            raise QueueUnavailableError("not subscribed")
        self._last_heard = time.monotonic()
        keepalive = asyncio.create_task(self._keep_alive(pubsub), name="redis-keepalive")
        try:
            async for message in pubsub.listen():
                self._last_heard = time.monotonic()
                if message["type"] == "message":
                    yield message["channel"].decode(), message["data"]
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis connection lost: {exc}") from exc
        finally:
            keepalive.cancel()
            await asyncio.gather(keepalive, return_exceptions=True)
        raise QueueUnavailableError("Redis subscription ended")

    async def _keep_alive(self, pubsub: aioredis.client.PubSub) -> None:
        """PING the idle listening connection; cut it when Redis stays silent."""
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            silent_for = time.monotonic() - self._last_heard
            if silent_for > KEEPALIVE_TIMEOUT or pubsub.connection is None:
                logger.warning("Redis listening connection silent; dropping it", extra={"silent_s": silent_for})
                if pubsub.connection is not None:
                    await pubsub.connection.disconnect(nowait=True)
                return
            if silent_for >= KEEPALIVE_INTERVAL:
                try:
                    await pubsub.ping()
                except (RedisError, OSError):
                    return  # the listener sees the same failure

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.client.ping(), PING_TIMEOUT))
        except (TimeoutError, RedisError, OSError):
            return False

    async def _drop_pubsub(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except (RedisError, OSError):
                pass  # closing a dead connection can fail; it is gone either way
