"""The Redis queue transport: one Redis, or a Redis Cluster, told apart on first contact.

``REDIS_URL`` may name a single Redis or any node of a Redis Cluster; nothing else
says which. The first time the transport reaches Redis it asks (``HELLO``)
and from then on works through the matching implementation: per-replica inbox
streams on one Redis (``inboxes``), sharded pub/sub on a cluster (``sharded``).
Deciding on first contact, not at start-up, keeps a replica started while Redis
is down retrying like any other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from redis import asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ...errors import PublishError, QueueUnavailableError
from ..base import CatchUp, QueueTransport, Received, Routed
from .anomalies import Anomalies
from .client import COMMAND_TIMEOUT, MAX_CONNECTIONS, is_cluster
from .entries import SignedEntries
from .functions import Functions
from .inboxes import InboxTransport
from .sharded import ShardedTransport

__all__ = ["RedisTransport"]

logger = logging.getLogger(__name__)


class RedisTransport(QueueTransport):
    """Delegates to ``InboxTransport`` or ``ShardedTransport``, whichever ``url`` turns out to need.

    It also serves the presence and sessions of the same backend (``redis``, ``functions``,
    ``hold``, ``release``, ``lookup``): the cluster's presence must subscribe to a user's
    channel before it announces the user, and all share one command client.
    """

    def __init__(self, url: str, *, process: str, entries: SignedEntries, anomalies: Anomalies | None = None,
                 replica: bool = True, max_connections: int = MAX_CONNECTIONS,
                 pool_timeout: float = COMMAND_TIMEOUT) -> None:
        self._url = url
        self.process = process
        self.replica = replica
        self._entries = entries
        self.anomalies = anomalies or Anomalies()
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._chosen: InboxTransport | ShardedTransport | None = None
        self._choosing: asyncio.Lock | None = None
        self._on_shard_back: Callable[[], Awaitable[None]] | None = None
        self._catch_up: CatchUp | None = None

    def on_shard_back(self, callback: Callable[[], Awaitable[None]]) -> None:
        """On a Redis Cluster, run ``callback`` after a lost shard is listened to again."""
        self._on_shard_back = callback

    def on_listening_again(self, catch_up: CatchUp) -> None:
        self._catch_up = catch_up
        if isinstance(self._chosen, ShardedTransport):
            self._chosen.catch_up = catch_up

    @property
    def mode(self) -> str | None:
        """``"redis"`` or ``"redis-cluster"`` once Redis was reached, else ``None``."""
        if self._chosen is None:
            return None
        return "redis-cluster" if isinstance(self._chosen, ShardedTransport) else "redis"

    async def chosen(self) -> InboxTransport | ShardedTransport:
        """The implementation for this URL; asks Redis which the first time.

        Raises ``QueueUnavailableError`` while Redis cannot be asked.
        """
        if self._chosen is None:
            self._choosing = self._choosing or asyncio.Lock()
            async with self._choosing:
                if self._chosen is None:
                    self._chosen = await self._choose()
        return self._chosen

    async def _choose(self) -> InboxTransport | ShardedTransport:
        try:
            cluster = await is_cluster(self._url)
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc
        logger.info("Redis mode chosen", extra={"mode": "redis-cluster" if cluster else "redis"})
        if cluster:
            return ShardedTransport(self._url, process=self.process, entries=self._entries, anomalies=self.anomalies,
                                    replica=self.replica, on_shard_back=self._on_shard_back, catch_up=self._catch_up,
                                    max_connections=self._max_connections)
        return InboxTransport(self._url, process=self.process, entries=self._entries, anomalies=self.anomalies,
                              replica=self.replica, max_connections=self._max_connections,
                              pool_timeout=self._pool_timeout)

    async def redis(self) -> aioredis.Redis | RedisCluster:
        """The command client the presence, sessions and key check share."""
        return (await self.chosen()).client

    async def functions(self) -> Functions:
        """The routing functions, on that client."""
        return (await self.chosen()).functions

    async def connect(self) -> None:
        await (await self.chosen()).connect()

    async def close(self) -> None:
        if self._chosen is not None:
            await self._chosen.close()

    async def publish(self, channel: str, data: bytes) -> int:
        return await (await self._for_sending()).publish(channel, data)

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        return await (await self._for_sending()).publish_to_user(channel, user_id, data, volatile=volatile)

    async def publish_many_to_user(self, channel: str, messages: Sequence[tuple[str, bytes]], *,
                                   volatile: bool = False) -> list[Routed | PublishError]:
        return await (await self._for_sending()).publish_many_to_user(channel, messages, volatile=volatile)

    async def _for_sending(self) -> InboxTransport | ShardedTransport:
        try:
            return await self.chosen()
        except QueueUnavailableError as exc:
            raise PublishError(str(exc)) from exc

    async def lookup(self, channel: str, user_id: str) -> bool:
        return await (await self.chosen()).lookup(channel, user_id)

    async def hold(self, user_id: str) -> None:
        await (await self.chosen()).hold(user_id)

    async def release(self, user_id: str) -> None:
        await (await self.chosen()).release(user_id)

    async def subscribe(self, channel: str) -> None:
        await (await self.chosen()).subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        if self._chosen is not None:
            await self._chosen.unsubscribe(channel)

    def messages(self) -> AsyncGenerator[Received, None]:
        """The chosen transport's own iterator: no extra step per message. ``subscribe`` came first."""
        if self._chosen is None:
            raise QueueUnavailableError("not subscribed")
        return self._chosen.messages()

    async def ping(self) -> bool:
        try:
            chosen = await self.chosen()
        except QueueUnavailableError:
            return False
        return await chosen.ping()
