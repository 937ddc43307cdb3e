"""Sharded pub/sub on a Redis Cluster: one shard channel per user, one for everyone.

A replica listens (``SSUBSCRIBE``) to the channel of every user it holds a socket
of, and to the channel for everyone; a sender looks up the user's presence and
publishes (``SPUBLISH``) to the user's channel in one script, on the one shard
that holds both (they share a hash tag, see ``keys``). Messages spread over the
shards with the users, and a replica hears only the users it holds.

A user's presence is written only once Redis confirmed this replica's subscription
to their channel (``hold``), so "sent" always means a replica reads the channel.
Each shard has a listening connection of its own (``shard_listener``), repaired on
its own: when a master goes down, fails over, or a slot moves away (Redis 7 then
unsubscribes its channels), the replica keeps hearing the other shards and listens
to the lost channels again on whichever node serves them now. Pub/sub cannot be read
from a position, so then it catches up from the users' histories: every durable
send is stored there before it is published (``routing.lua``). Volatile sends that
were in flight on a lost connection are lost; sends while nobody listens are stored
(for a session to recover) or refused, never answered "sent".

On a cluster whose masters have replicas, a durable send waits (``WAIT``) until one
replica has it, so that a failover keeps what was answered "stored" or "sent" (``replication``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from redis.asyncio.cluster import ClusterNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...compat.redis import refresh_slots
from ...errors import QueueUnavailableError
from ...log_throttle import LogThrottle
from ..base import CatchUp, QueueTransport, Received, Routed
from .anomalies import Anomalies
from .client import MAX_CONNECTIONS, answers, connect_cluster, sending
from .entries import SignedEntries
from .functions import Functions, unpacked
from .keys import all_channel, history_key, presence_key, sessions_key, user_channel
from .replication import ReplicatedCalls
from .shard_listener import ShardListener, node_options

__all__ = ["ShardedTransport"]

logger = logging.getLogger(__name__)

# Pauses between attempts to listen to lost channels again.
RETRY_MIN = 0.05
RETRY_MAX = 0.5
# How often the slot map is read again, to find channels listened to on a node that no longer
# serves their slot as master (Redis lets a replica serve shard channels, and does not always
# unsubscribe them when a master becomes a replica: messages then come late, if at all).
SLOT_CHECK_INTERVAL = 1.0


class ShardedTransport(QueueTransport):
    """Publishes through the cluster client; listens with one pub/sub connection per shard.

    ``hold`` and ``release`` (called by the presence for a user's first and last
    socket here) subscribe to and unsubscribe from the user's channel; ``hold``
    returns once Redis confirmed, and raises ``QueueUnavailableError`` (the socket is
    refused, its presence never written) when it cannot.

    :param on_shard_back: run after listening to lost channels again (the presence
        writes its entries again: a restarted master has lost them).
    """

    def __init__(self, url: str, *, process: str, entries: SignedEntries, anomalies: Anomalies,
                 replica: bool = True, on_shard_back: Callable[[], Awaitable[None]] | None = None,
                 catch_up: CatchUp | None = None, max_connections: int = MAX_CONNECTIONS) -> None:
        self._on_shard_back = on_shard_back
        self.catch_up = catch_up
        self.client = connect_cluster(url, max_connections=max_connections)
        self.process = process
        self._entries = entries
        self.anomalies = anomalies
        self.functions = Functions(self.client, loads=replica)
        self._channel = ""
        self._held: dict[str, int] = {}  # user id -> sockets of theirs on this replica
        self._confirming: dict[str, asyncio.Task[None]] = {}  # user id -> the subscription their first socket awaits
        self._listeners: dict[str, ShardListener] = {}  # node name -> its listener
        self._received: asyncio.Queue[bytes] = asyncio.Queue()
        self._listening = False
        self._to_repair: set[str] = set()  # channels to listen to again
        self._repairer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()  # lost listeners being closed
        self._throttle = LogThrottle()
        self._replicated = ReplicatedCalls(self.client, self.functions, max_connections=max_connections)

    async def connect(self) -> None:
        try:
            await self.client.initialize()
            if self.functions.loads:
                await self.functions.load()
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis Cluster unreachable: {exc}") from exc

    async def close(self) -> None:
        self._listening = False
        await self._drop_listeners()
        await self._replicated.close()
        await self.client.aclose()

    # --- sending -----------------------------------------------------------

    async def publish(self, channel: str, data: bytes) -> int:
        reached = int(await sending(self.client.spublish(all_channel(channel), data)))
        return reached - 1 if self._listening else reached  # never counting this replica

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        return await self._send_or_look(channel, user_id, [data, b"1" if volatile else b"0"])

    async def lookup(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` has a socket anywhere: listened for, with a genuine presence entry."""
        return (await self._send_or_look(channel, user_id, [])).online

    async def _send_or_look(self, channel: str, user_id: str, sending_args: list[bytes]) -> Routed:
        """The routing function; for a durable send on a master with replicas, waiting for one
        (``replication``)."""
        keys = [presence_key(channel, user_id), sessions_key(channel, user_id), history_key(channel, user_id)]
        args = [user_channel(channel, user_id), *sending_args]
        if sending_args[1:] == [b"0"] and self._replicated.replicated(keys[0]):
            reply, replicas = await sending(self._replicated.call("cluster_send", keys, args))
            if replicas == 0:
                self.anomalies.report(["unreplicated"], user_id=user_id)
        else:
            reply = await sending(self.functions.call("cluster_send", keys, args))
        listening, entries, offset, sessions, anomalies = reply
        if anomalies:
            self.anomalies.report(anomalies, user_id=user_id)
        online = int(listening) > 0 and self._entries.any_genuine(user_id, entries)
        recoverable = online or self._entries.any_recoverable(user_id, sessions)
        return Routed(online, offset.decode() if offset and recoverable else None)

    # --- listening ---------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Listen to every shard, from scratch."""
        self._channel = channel
        self._listening = False
        await self._drop_listeners()
        self._received = asyncio.Queue()
        try:
            await self.client.initialize()
            await self.functions.load()
            failed = await self._listen_to(self._wanted())
            if failed:
                raise next(iter(failed.values()))
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_listeners()
            raise QueueUnavailableError(f"Redis Cluster subscribe failed: {exc}") from exc
        self._listening = True
        self._watcher = asyncio.get_running_loop().create_task(self._watch_slots(), name="redis-slot-watch")
        if self.catch_up is not None:  # sockets paused by a repair that this replaces
            await self.catch_up.catch_up(list(self._held))

    async def unsubscribe(self, channel: str) -> None:
        self._listening = False
        await self._drop_listeners()

    def _wanted(self, among: set[str] | None = None) -> list[str]:
        """The channels this replica listens to now (of ``among``, when given)."""
        wanted = [all_channel(self._channel), *(user_channel(self._channel, user) for user in self._held)]
        return wanted if among is None else [name for name in wanted if name in among]

    async def hold(self, user_id: str) -> None:
        """A socket of ``user_id`` joined this replica: listen to their channel (for the first one),
        returning once Redis confirmed it, also to a second socket that came meanwhile. Raises
        ``QueueUnavailableError`` when it cannot be confirmed (the count is undone)."""
        count = self._held.get(user_id, 0)
        self._held[user_id] = count + 1
        if not self._listening:
            await self.release(user_id)
            raise QueueUnavailableError("not listening to the Redis Cluster yet")
        confirming = self._confirming.get(user_id)
        if count == 0:
            confirming = asyncio.create_task(self._listen_or_raise(user_channel(self._channel, user_id)))
            self._confirming[user_id] = confirming
            confirming.add_done_callback(functools.partial(self._confirmed, user_id))
        if confirming is None:
            return
        try:
            await asyncio.shield(confirming)
        except (RedisError, OSError, TimeoutError) as exc:
            await self.release(user_id)
            raise QueueUnavailableError(f"could not listen to the user's channel: {exc}") from exc

    def _confirmed(self, user_id: str, confirming: asyncio.Task[None]) -> None:
        if self._confirming.get(user_id) is confirming:
            del self._confirming[user_id]

    async def _listen_or_raise(self, name: str) -> None:
        failed = await self._listen_to([name])
        if failed:
            raise failed[name]

    async def release(self, user_id: str) -> None:
        """A socket of ``user_id`` left: stop listening to their channel after the last one."""
        count = self._held.pop(user_id, 0) - 1
        if count > 0:
            self._held[user_id] = count
            return
        name = user_channel(self._channel, user_id)
        for node, listener in list(self._listeners.items()):
            if name not in listener.channels:
                continue
            if listener.channels == {name}:
                # Its last channel: close it once the channel's last messages are read.
                del self._listeners[node]
                await listener.unsubscribe(name)
                await listener.close()
            else:
                await listener.unsubscribe(name)

    async def messages(self) -> AsyncGenerator[Received, None]:
        """What every shard's listener hears; a lost shard is repaired here, not reported
        (the replica keeps hearing the others meanwhile). A stored message comes as
        ``@<offset> <envelope>``: an envelope starts with ``{`` or a hex signature."""
        received = self._received
        while True:
            yield unpacked(await received.get())

    async def ping(self) -> bool:
        return await answers(self.client)

    async def _listen_to(self, channels: list[str]) -> dict[str, Exception]:
        """Subscribe to each channel on the listener of the node serving it; the channels that
        failed, with why (the others are listened to)."""
        failed: dict[str, Exception] = {}
        waiting: dict[str, Awaitable[None]] = {}
        for name in channels:
            try:
                waiting[name] = self._listener_of(self._node_of(name)).subscribe(name)
            except RedisConnectionError as exc:
                failed[name] = exc
        outcomes = await asyncio.gather(*waiting.values(), return_exceptions=True)
        for name, outcome in zip(waiting, outcomes, strict=True):
            if isinstance(outcome, (RedisError, OSError, TimeoutError)):
                failed[name] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return failed

    def _listener_of(self, node: ClusterNode) -> ShardListener:
        listener = self._listeners.get(node.name)
        if listener is None or listener.failed:
            listener = ShardListener(node.host, int(node.port),
                                     options=node_options(self.client.get_connection_kwargs()),
                                     out=self._received, on_lost=self._lost, on_dropped=self._dropped)
            self._listeners[node.name] = listener
        return listener

    def _node_of(self, channel: str) -> ClusterNode:
        node = self.client.get_node_from_key(channel)
        if node is None:
            raise RedisConnectionError(f"no node serves the slot of {channel}")
        return node

    # --- listening again ------------------------------------------------------

    def _lost(self, listener: ShardListener, error: Exception) -> None:
        """A shard's listener failed: drop it and listen to its channels again (the others hear on)."""
        for node, candidate in list(self._listeners.items()):
            if candidate is listener:
                del self._listeners[node]
        if self._listening and listener.channels:
            logger.error("lost a Redis Cluster shard; listening to it again",
                         extra={"node": listener.address, "channels": len(listener.channels), "error": str(error)})
            self._repair(set(listener.channels))
        closing = asyncio.get_running_loop().create_task(listener.close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _dropped(self, listener: ShardListener, channel: str) -> None:
        """Redis unsubscribed ``channel`` on its own: its slot moved (resharding, failover)."""
        if self._listening:
            held = self._throttle.allow("moved")
            if held is not None:
                logger.warning("Redis moved a shard channel's slot; listening to it where it is now",
                               extra={"node": listener.address, "suppressed": held})
            self._repair({channel})

    async def _watch_slots(self) -> None:
        """Read the slot map every ``SLOT_CHECK_INTERVAL``; a channel whose listener is not on the
        master of its slot now is left there and listened to again where it belongs."""
        while self._listening:
            await asyncio.sleep(SLOT_CHECK_INTERVAL)
            try:
                await refresh_slots(self.client)
            except (RedisError, OSError) as exc:
                logger.debug("could not read the slot map: %s", exc)
                continue
            for node, listener in list(self._listeners.items()):
                misplaced = {name for name in listener.channels if self._owner(name) not in (node, None)}
                if misplaced:
                    logger.warning("shard channels listened to off their master; listening to them again",
                                   extra={"node": listener.address, "channels": len(misplaced)})
                    await asyncio.gather(*(listener.unsubscribe(name) for name in misplaced))
                    self._repair(misplaced)

    def _owner(self, channel: str) -> str | None:
        node = self.client.get_node_from_key(channel)
        return None if node is None else str(node.name)

    def _repair(self, channels: set[str]) -> None:
        """Listen to ``channels`` again, with those of every loss reported meanwhile, in one task."""
        self._to_repair |= channels
        if self._repairer is None or self._repairer.done():
            self._repairer = asyncio.get_running_loop().create_task(self._repair_all(), name="redis-shard-repair")

    async def _repair_all(self) -> None:
        """Until every lost channel is listened to again: read the slot map again (the slot may
        have moved), listen on the node serving it now, and catch its users up."""
        delay = RETRY_MIN
        while self._listening and self._to_repair:
            channels, self._to_repair = self._to_repair, set()
            try:
                failed = await self._listen_again(channels)
            except (RedisError, OSError, TimeoutError) as exc:
                logger.debug("listening again failed: %s", exc)
                failed = channels
            if not failed:
                delay = RETRY_MIN
                continue
            self._to_repair |= failed
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _listen_again(self, channels: set[str]) -> set[str]:
        """One attempt; the channels still to listen to. The users on them are paused first (their
        live messages held), and those now listened to caught up from their histories; the others
        stay paused until an attempt listens to them."""
        await refresh_slots(self.client)
        users = {user_channel(self._channel, user): user for user in self._held}
        wanted = self._wanted(channels)
        if self.catch_up is not None:
            self.catch_up.pause([users[name] for name in wanted if name in users])
        failed = await self._listen_to(wanted)
        confirmed = [name for name in wanted if name not in failed]
        if not confirmed:
            return set(failed)
        try:
            # A restarted master listens before it serves (CLUSTERDOWN for a while):
            # until a read in its slots works, the presence could not be written there.
            await self.client.exists(confirmed[0])
        except (RedisError, OSError):
            return set(wanted)
        if self.catch_up is not None:
            await self.catch_up.catch_up([users[name] for name in confirmed if name in users])
        logger.warning("listening to Redis Cluster shard channels again", extra={"channels": len(confirmed)})
        if self._on_shard_back is not None:
            await self._on_shard_back()  # a restarted master comes back empty
        return set(failed)

    async def _drop_listeners(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        if self._repairer is not None:
            self._repairer.cancel()
            await asyncio.gather(self._repairer, return_exceptions=True)
            self._repairer = None
        self._to_repair = set()
        listeners, self._listeners = list(self._listeners.values()), {}
        await asyncio.gather(*(listener.close() for listener in listeners), *self._closing)

