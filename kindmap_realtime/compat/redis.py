"""redis-py, below its public API: one write for many commands (``kindmap_realtime.backends.redis.pipeline``),
the cluster's slot map read again and looked up (``sharded``, ``replication``), and FCALL routed by
its first key (``HookedCluster``, whose override of the private slot lookup asks ``command_slot``
first, which ``kindmap_realtime.backends.redis.client`` fills)."""

from __future__ import annotations

from asyncio import StreamWriter
from importlib.metadata import version
from typing import Any

from redis.asyncio.cluster import RedisCluster

from . import Internal, check

__all__ = ["INTERNALS", "HookedCluster", "check_redis", "refresh_slots", "slot_nodes", "stream_of"]

_PIN = "redis-py 8.1.0"

INTERNALS = (
    Internal("redis.asyncio.connection:AbstractConnection", "_writer", "the auto-pipeline writes a tick's "
             "commands in one write, without send_packed_command's coroutine and timeout task", _PIN,
             "a synchronous write of packed commands"),
    Internal("redis.asyncio.cluster:RedisCluster", "nodes_manager", "the slot map is read again after a "
             "failover or a moved slot, and a key's master and replicas looked up", _PIN,
             "public 'refresh the slot map' and 'nodes of a slot'"),
    Internal("redis.asyncio.cluster:NodesManager", "initialize", "reads the slot map again", _PIN, "the same",
             use=r"\.nodes_manager\.initialize\b"),  # qualified: RedisCluster.initialize is another, public
    Internal("redis.asyncio.cluster:NodesManager", "slots_cache", "the nodes (master first) of a slot", _PIN,
             "the same"),
    Internal("redis.asyncio.cluster:RedisCluster", "_determine_slot", "FCALL is routed by its first key, not "
             "by COMMAND GETKEYS (a second round trip per call, which the ACL users may not run either): "
             "HookedCluster asks command_slot first", _PIN, "FCALL key extraction in redis-py"),
)


def check_redis() -> None:
    check(INTERNALS, "redis", version("redis"))


class HookedCluster(RedisCluster):
    """redis-py's cluster client, asking ``command_slot`` for a command's slot before its own lookup."""

    def command_slot(self, command: str, *args: Any) -> int | None:
        """The slot ``command`` goes to; ``None``: redis-py finds it (``COMMAND GETKEYS`` for most commands)."""
        return None

    async def _determine_slot(self, command: str, *args: Any) -> int:
        slot = self.command_slot(command, *args)
        if slot is None:
            slot = await super()._determine_slot(command, *args)
        return slot


def stream_of(connection: Any) -> StreamWriter | None:
    """The stream a connected redis-py connection writes to (``None`` once it failed or closed)."""
    writer: StreamWriter | None = connection._writer
    return writer


async def refresh_slots(cluster: Any) -> None:
    """Read the cluster's slot map again."""
    await cluster.nodes_manager.initialize()


def slot_nodes(cluster: Any, slot: int) -> list[Any]:
    """The nodes serving ``slot``, its master first ([] when the map has none)."""
    nodes: list[Any] = cluster.nodes_manager.slots_cache.get(slot, [])
    return nodes
