"""Sharded pub/sub on a Redis Cluster: one shard channel per user, one for everyone.

A replica listens (``SSUBSCRIBE``) to the channel of every user it holds a socket
of, and to the channel for everyone; a sender looks up the user's presence and
publishes (``SPUBLISH``) to the user's channel in one script, on the one shard
that holds both (they share a hash tag, see ``keys``). Messages spread over the
shards with the users, and a replica hears only the users it holds.

Each shard has a listening connection of its own, repaired on its own: when a
master goes down, the replica keeps hearing the other shards and listens to the
lost shard's channels again as soon as it answers. Pub/sub cannot be read from a
position: a listening connection that fails loses what was in flight on it, and
sends while the replica listens again are refused (the user has no listener, so
``USER_NOT_CONNECTED``), not lost. A connection that goes silent without closing
is PINGed and replaced after ``KEEPALIVE_TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from redis import asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...errors import QueueUnavailableError
from ..base import QueueTransport, Received, Routed
from .anomalies import Anomalies
from .client import COMMAND_TIMEOUT, MAX_CONNECTIONS, answers, connect_cluster, sending
from .entries import SignedEntries
from .functions import Functions
from .keys import all_channel, history_key, presence_key, sessions_key, user_channel

__all__ = ["ShardedTransport"]

logger = logging.getLogger(__name__)

# A listening connection is PINGed when idle; silent this long, it is presumed dead.
KEEPALIVE_INTERVAL = 1.0
KEEPALIVE_TIMEOUT = 3.0
# Pauses between attempts to listen to a lost shard again.
RETRY_MIN = 0.05
RETRY_MAX = 0.5
_LISTENER_OPTIONS = ("username", "password", "socket_connect_timeout", "socket_timeout", "ssl_ca_certs",
                     "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile")


class ShardedTransport(QueueTransport):
    """Publishes through the cluster client; listens with one pub/sub connection per shard.

    ``hold`` and ``release`` (called by the presence for a user's first and last
    socket here) subscribe to and unsubscribe from the user's channel; ``hold``
    returns once Redis confirmed, so a message sent after the presence entry is
    written is heard.

    :param on_shard_back: run after listening to a lost shard again (the presence
        writes its entries again: a restarted master has lost them).
    """

    def __init__(self, url: str, *, process: str, entries: SignedEntries, anomalies: Anomalies,
                 replica: bool = True, on_shard_back: Callable[[], Awaitable[None]] | None = None,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._on_shard_back = on_shard_back
        self.client = connect_cluster(url, max_connections=max_connections)
        self.process = process
        self._entries = entries
        self.anomalies = anomalies
        self.functions = Functions(self.client, loads=replica)
        self._channel = ""
        self._held: dict[str, int] = {}  # user id -> sockets of theirs on this replica
        self._listeners: dict[str, _ShardListener] = {}  # node name -> its listener
        self._received: asyncio.Queue[bytes] = asyncio.Queue()
        self._listening = False
        self._repairs: set[asyncio.Task[None]] = set()

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
        await self.client.aclose()

    async def publish(self, channel: str, data: bytes) -> int:
        reached = int(await sending(self.client.spublish(all_channel(channel), data)))
        return reached - 1 if self._listening else reached  # never counting this replica

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        return await self._send_or_look(channel, user_id, [data, b"1" if volatile else b"0"])

    async def lookup(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` has a socket anywhere: listened for, with a genuine presence entry."""
        return (await self._send_or_look(channel, user_id, [])).online

    async def _send_or_look(self, channel: str, user_id: str, sending_args: list[bytes]) -> Routed:
        keys = [presence_key(channel, user_id), sessions_key(channel, user_id), history_key(channel, user_id)]
        listening, entries, offset, sessions, anomalies = await sending(self.functions.call(
            "cluster_send", keys, [user_channel(channel, user_id), *sending_args]))
        if anomalies:
            self.anomalies.report(anomalies, user_id=user_id)
        online = int(listening) > 0 and self._entries.any_genuine(user_id, entries)
        recoverable = online or self._entries.any_recoverable(user_id, sessions)
        return Routed(online, offset.decode() if offset and recoverable else None)

    async def subscribe(self, channel: str) -> None:
        """Listen to every shard, from scratch."""
        self._channel = channel
        self._listening = False
        await self._drop_listeners()
        self._received = asyncio.Queue()
        try:
            await self.client.initialize()
            await self.functions.load()
            await self._listen_to(self._wanted())
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_listeners()
            raise QueueUnavailableError(f"Redis Cluster subscribe failed: {exc}") from exc
        self._listening = True

    def _wanted(self, among: set[str] | None = None) -> list[str]:
        """The channels this replica listens to now (of ``among``, when given)."""
        wanted = [all_channel(self._channel), *(user_channel(self._channel, user) for user in self._held)]
        return wanted if among is None else [name for name in wanted if name in among]

    def _lost(self, listener: _ShardListener, error: Exception) -> None:
        """A shard's listener failed: drop it and listen to its channels again (the others hear on)."""
        for node, candidate in list(self._listeners.items()):
            if candidate is listener:
                del self._listeners[node]
        if self._listening:
            logger.error("lost a Redis Cluster shard; listening to it again", extra={"error": str(error)})
            self._repair(set(listener.channels))
            asyncio.get_running_loop().create_task(listener.close())

    def _repair(self, channels: set[str]) -> None:
        task = asyncio.get_running_loop().create_task(self._listen_again(channels), name="redis-shard-repair")
        self._repairs.add(task)
        task.add_done_callback(self._repairs.discard)

    async def _listen_again(self, channels: set[str]) -> None:
        """Until it works: read the slot map again (the shard may have moved) and listen."""
        delay = RETRY_MIN
        while self._listening:
            try:
                await self.client.nodes_manager.initialize()
                wanted = self._wanted(channels)
                await self._listen_to(wanted)
                if wanted:
                    # A restarted master listens before it serves (CLUSTERDOWN for a while):
                    # until a read in its slots works, the presence could not be written there.
                    await self.client.exists(wanted[0])
                logger.warning("listening to a Redis Cluster shard again", extra={"channels": len(channels)})
                if self._on_shard_back is not None:
                    await self._on_shard_back()  # a restarted master comes back empty
                return
            except (RedisError, OSError, TimeoutError) as exc:
                logger.debug("listening again failed: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def unsubscribe(self, channel: str) -> None:
        self._listening = False
        await self._drop_listeners()

    async def hold(self, user_id: str) -> None:
        """A socket of ``user_id`` joined this replica: listen to their channel (the first one's)."""
        count = self._held.get(user_id, 0)
        self._held[user_id] = count + 1
        if count == 0 and self._listening:
            name = user_channel(self._channel, user_id)
            try:
                await self._listen_to([name])
            except (RedisError, OSError, TimeoutError) as exc:
                # Their messages are refused meanwhile (nobody listens) until the repair works.
                logger.warning("could not listen to a user's channel; retrying", extra={"error": str(exc)})
                self._repair({name})

    async def release(self, user_id: str) -> None:
        """A socket of ``user_id`` left: stop listening to their channel after the last one."""
        count = self._held.pop(user_id, 0) - 1
        if count > 0:
            self._held[user_id] = count
            return
        name = user_channel(self._channel, user_id)
        node = self._node_of(name).name
        listener = self._listeners.get(node)
        if listener is None:
            return
        if listener.channels == {name}:
            # Its last channel: close it once the channel's last messages are read.
            del self._listeners[node]
            await listener.unsubscribe(name, last=True)
            await listener.close()
        else:
            await listener.unsubscribe(name)

    async def messages(self) -> AsyncGenerator[Received, None]:
        """What every shard's listener hears; a lost shard is repaired here, not reported
        (the replica keeps hearing the others meanwhile). A stored message comes as
        ``@<offset> <envelope>``: an envelope starts with ``{`` or a hex signature."""
        received = self._received
        while True:
            data = await received.get()
            if data[:1] == b"@":
                offset, _, data = data[1:].partition(b" ")
                yield data, offset.decode()
            else:
                yield data, None

    async def ping(self) -> bool:
        return await answers(self.client)

    async def _listen_to(self, channels: list[str]) -> None:
        by_node: dict[str, list[str]] = {}
        for name in channels:
            node = self._node_of(name)
            if node.name not in self._listeners:
                self._listeners[node.name] = _ShardListener(node.host, int(node.port), self.client, self._received,
                                                            on_lost=self._lost)
            by_node.setdefault(node.name, []).append(name)
        await asyncio.gather(*(self._listeners[node].subscribe(names) for node, names in by_node.items()))

    def _node_of(self, channel: str) -> ClusterNode:
        node = self.client.get_node_from_key(channel)
        if node is None:
            raise RedisConnectionError(f"no node serves the slot of {channel}")
        return node

    async def _drop_listeners(self) -> None:
        for task in list(self._repairs):
            task.cancel()
        await asyncio.gather(*self._repairs, return_exceptions=True)
        listeners, self._listeners = list(self._listeners.values()), {}
        await asyncio.gather(*(listener.close() for listener in listeners))


class _ShardListener:
    """One shard's pub/sub connection, its reader and its keepalive."""

    def __init__(self, host: str, port: int, cluster: Any, out: asyncio.Queue[bytes], *,
                 on_lost: Callable[[_ShardListener, Exception], None]) -> None:
        self._on_lost = on_lost
        # The cluster client's credentials and timeouts; a connection of its own, never retried.
        kwargs = {key: value for key, value in cluster.get_connection_kwargs().items() if key in _LISTENER_OPTIONS}
        self._client = aioredis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0),
                                      ssl=issubclass(cluster.get_connection_kwargs().get("connection_class", object),
                                                     SSLConnection), **kwargs)
        self._pubsub = self._client.pubsub()
        self._out = out
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}  # of SSUBSCRIBE
        self._unsubscribed: dict[bytes, asyncio.Future[None]] = {}  # of SUNSUBSCRIBE
        self._ending = False  # its last channel is being unsubscribed: the end of its reading is no loss
        self.channels: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_heard = time.monotonic()

    async def subscribe(self, channels: list[str]) -> None:
        """Subscribe to ``channels`` (one command each: they may lie in different slots) and
        return once Redis confirmed them all."""
        loop = asyncio.get_running_loop()
        waiting = [self._confirmations.setdefault(name.encode(), loop.create_future()) for name in channels]
        self.channels.update(channels)
        for name in channels:
            await self._pubsub.ssubscribe(name)
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._read(), name="redis-shard-reader"),
                           asyncio.create_task(self._keep_alive(), name="redis-keepalive")]
        await asyncio.wait_for(asyncio.gather(*waiting), COMMAND_TIMEOUT)

    async def unsubscribe(self, channel: str, *, last: bool = False) -> None:
        """Stop listening to ``channel``, returning once Redis confirmed it: the messages Redis
        sent on it before reach the replica (which counts those whose user left) rather than
        being dropped with the connection. ``last``: no channel is left on this connection."""
        done = self._unsubscribed.setdefault(channel.encode(), asyncio.get_running_loop().create_future())
        self.channels.discard(channel)
        self._ending = last
        try:
            await self._pubsub.sunsubscribe(channel)
            await asyncio.wait_for(asyncio.shield(done), COMMAND_TIMEOUT)
        except (RedisError, OSError, TimeoutError):
            pass  # the connection is failing; the reader reports it

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiting in (*self._confirmations.values(), *self._unsubscribed.values()):
            waiting.cancel()
        try:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._client.aclose()
        except (RedisError, OSError):
            pass  # closing a dead connection can fail; it is gone either way

    async def _read(self) -> None:
        try:
            async for message in self._pubsub.listen():
                self._last_heard = time.monotonic()
                kind = message["type"]
                if kind == "smessage":
                    self._out.put_nowait(message["data"])
                elif kind in ("ssubscribe", "sunsubscribe"):
                    waiting = self._confirmations if kind == "ssubscribe" else self._unsubscribed
                    confirmed = waiting.pop(message["channel"], None)
                    if confirmed is not None and not confirmed.done():
                        confirmed.set_result(None)
        except (RedisError, OSError) as exc:
            self._on_lost(self, exc)
        else:
            if not self._ending:
                self._on_lost(self, QueueUnavailableError("the subscription ended"))

    async def _keep_alive(self) -> None:
        """PING the idle listening connection; cut it when the shard stays silent."""
        while True:
            await asyncio.sleep(KEEPALIVE_INTERVAL)
            silent_for = time.monotonic() - self._last_heard
            connection = self._pubsub.connection
            if silent_for > KEEPALIVE_TIMEOUT and connection is not None:
                logger.warning("Redis listening connection silent; dropping it", extra={"silent_s": silent_for})
                await connection.disconnect(nowait=True)
                return
            if silent_for >= KEEPALIVE_INTERVAL:
                try:
                    await self._pubsub.ping()
                except (RedisError, OSError):
                    return  # the reader sees the same failure
