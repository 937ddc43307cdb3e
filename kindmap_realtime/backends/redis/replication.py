"""Durable sends on a Redis Cluster whose masters have replicas: each waits for one replica.

A message answered "stored" or "sent" is in the user's history on the master of their
slot; replication is asynchronous, so a master that dies right after may take it along
when its replica is promoted. ``WAIT 1`` after the routing call, on the same connection
(it covers that connection's writes), returns once a replica has it. It runs on a client
of the master of our own: redis-py's cluster client closes and replaces its connections
as it likes, also under a command in flight on one taken from it.

A replica that does not confirm within ``WAIT_TIMEOUT_MS`` is counted (``unreplicated``)
and the send answered all the same: the message is stored and published, and only a
failover before the replica catches up loses it, while refusing it would make the sender
send it again (a duplicate, since it was delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...compat.redis import refresh_slots, slot_nodes
from .client import COMMAND_TIMEOUT
from .functions import Functions
from .shard_listener import node_options

__all__ = ["WAIT_TIMEOUT_MS", "ReplicatedCalls"]

# How long a durable send waits for a replica of its master. Loopback or one data centre
# replicates in well under a millisecond.
WAIT_TIMEOUT_MS = 100


class ReplicatedCalls:
    """Routing calls that wait for a replica, on clients of the masters of our own.

    :param max_connections: per master; a burst waits for a free one (up to ``COMMAND_TIMEOUT``).
    """

    def __init__(self, cluster: RedisCluster, functions: Functions, *, max_connections: int) -> None:
        self._cluster = cluster
        self._functions = functions
        self._max_connections = max_connections
        self._masters: dict[str, aioredis.Redis] = {}  # node name -> our client of it

    def replicated(self, key: str) -> bool:
        """Whether the slot map gives the master of ``key`` a replica."""
        return len(self._slot_nodes(key)) > 1

    async def call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, int | None]:
        """Function ``name`` on the master of ``keys``, then ``WAIT``; the reply and the replicas that
        confirmed (``None``: redirected, not waited for). A failed connection may mean a failover:
        the slot map is read again, and the error raised (whether the call ran is unknown)."""
        node = self._slot_nodes(keys[0])[0]
        client = self._masters.get(node.name)
        if client is None:
            client = self._masters[node.name] = self._client_of(node)
        try:
            return await self._functions.call_and_wait(client, name, keys, args, timeout_ms=WAIT_TIMEOUT_MS)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            with contextlib.suppress(RedisError, OSError):
                await refresh_slots(self._cluster)
            raise

    async def close(self) -> None:
        masters, self._masters = list(self._masters.values()), {}
        await asyncio.gather(*(master.aclose() for master in masters), return_exceptions=True)

    def _slot_nodes(self, key: str) -> list[ClusterNode]:
        nodes: list[ClusterNode] = slot_nodes(self._cluster, self._cluster.keyslot(key))
        return nodes

    def _client_of(self, node: ClusterNode) -> aioredis.Redis:
        """The cluster client's credentials, TLS and timeouts; never retrying by itself."""
        pool = aioredis.BlockingConnectionPool(host=node.host, port=int(node.port),
                                               max_connections=self._max_connections, timeout=COMMAND_TIMEOUT,
                                               retry=Retry(NoBackoff(), 0),
                                               **node_options(self._cluster.get_connection_kwargs()))
        return aioredis.Redis.from_pool(pool)
