"""Per-replica inboxes on one Redis (not a Redis Cluster: ``sharded``).

Each replica process reads its own Redis list (its *inbox*). A sender appends an
envelope (``RPUSH``) only to the inboxes of the replicas that need it -- those the
user's presence entries name -- in the same function that looks them up, so a
replica never reads, let alone decodes, a message for users it does not hold.

The reader drops only what it has read, and says so by the count it has read in all
(``routing.lua``'s ``advance``), so a reply lost with a connection that froze, died
silently or was cut by a Redis outage is read again, never lost: the replica
reconnects and reads on from where it was. Lists, not streams: a sender may only
append to a list, where ``XADD`` could also trim what others wrote (``MAXLEN 0``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from redis.exceptions import RedisError

from ...errors import PublishError, QueueUnavailableError
from ..base import QueueTransport, Received, Routed
from .anomalies import Anomalies
from .client import (
    COMMAND_TIMEOUT,
    MAX_CONNECTIONS,
    answers,
    connect_redis,
    sending,
    without_retries,
)
from .entries import SignedEntries
from .functions import Functions, function_name, is_missing, unpacked
from .keys import consumed_key, history_key, inbox_key, presence_key, registry_key, sessions_key
from .pipeline import AutoPipeline

__all__ = ["INBOX_MAX_LEN", "InboxTransport"]

logger = logging.getLogger(__name__)

# A read waits this long for news; no answer within COMMAND_TIMEOUT means the
# connection is dead (or frozen): it is replaced and reading resumes.
READ_BLOCK_S = 1.0
READ_BATCH = 500
# The longest an inbox grows while its replica does not read (frozen, restarting):
# about 40 MB of navigation-sized messages; senders append no more, and log each one dropped.
INBOX_MAX_LEN = 100_000
# An inbox outlives its replica this long (longer than the registry vouches for it); the
# registry's upkeep deletes a dead replica's inbox sooner.
INBOX_TTL_MS = 60_000
# The count of what a reader consumed outlives a reader that froze far longer than that.
CONSUMED_TTL_MS = 3_600_000


class InboxTransport(QueueTransport):
    """Sends through the routing functions on a command client; reads the inbox on a connection of its own.

    The reading connection has no automatic retry: when Redis goes away the
    ``messages()`` iterator raises at once, so the manager knows it is deaf and
    reconnects on its own schedule, then reads on from the last element it read.

    It owns the command client (``client``), which the presence and key check
    of the same backend share, and the routing functions (``functions``).

    :param process: this replica process's name in presence entries and the registry;
        its inbox is named after it.
    :param replica: ``False`` for an emitter: it never reads, and calls the routing functions
        without loading them.
    :param entries: which presence and session entries to believe when a send reports
        whether a user is online, or can recover what was stored.
    :param anomalies: where the functions' reports of foreign data in Redis go.
    """

    def __init__(self, url: str, *, process: str, entries: SignedEntries, anomalies: Anomalies,
                 replica: bool = True, max_connections: int = MAX_CONNECTIONS,
                 pool_timeout: float = COMMAND_TIMEOUT) -> None:
        self.client = connect_redis(url, max_connections=max_connections, pool_timeout=pool_timeout)
        self.process = process
        self._entries = entries
        self.anomalies = anomalies
        self.functions = Functions(self.client, loads=replica)
        self._reader = without_retries(self.client, f"kindmap-inbox:{process}")
        self._pipeline = AutoPipeline(self.client.connection_pool.make_connection(),  # type: ignore[no-untyped-call]
                                      max_calls=max_connections, wait_timeout=pool_timeout)
        self._inbox: str | None = None
        self._consumed_key = ""
        self._consumed = 0  # elements of the inbox read in all: a new process's inbox is new

    async def connect(self) -> None:
        try:
            await self.client.ping()
            if self.functions.loads:
                await self.functions.load()
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._pipeline.close()
        await self._reader.aclose(close_connection_pool=True)
        await self.client.aclose()

    async def publish(self, channel: str, data: bytes) -> int:
        return int(await sending(self.functions.call("send_to_all", [], [*self._routing(channel), data])))

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        (result,) = await self.publish_many_to_user(channel, [(user_id, data)], volatile=volatile)
        if isinstance(result, PublishError):
            raise result
        return result

    async def publish_many_to_user(self, channel: str, messages: Sequence[tuple[str, bytes]], *,
                                   volatile: bool = False) -> list[Routed | PublishError]:
        """All in one round trip, the commands packed here: redis-py's pipeline spends more CPU
        packing each command than Redis spends running it. They go out on the auto-pipeline
        (``pipeline``), with what concurrent callers send in the same tick."""
        # FCALL <send> 3 <user's keys> <routing...> <envelope> <volatile>: only the keys and envelope vary.
        routing = self._routing(channel)
        start = b"*%d\r\n" % (8 + len(routing)) + _bulk(b"FCALL") + _bulk(function_name("send")) + _bulk(b"3")
        middle = b"".join(_bulk(arg) for arg in routing)
        end = _bulk(b"1" if volatile else b"0")
        commands = [b"".join((start, *(_bulk(key) for key in _user_keys(channel, user_id)), middle, _bulk(data), end))
                    for user_id, data in messages]
        replies = await sending(self._pipeline.execute(commands))
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, Exception) and is_missing(reply)]
        if missing:  # Redis restarted since the library was loaded: load it, send those again
            await sending(self.functions.reload())
            for index, reply in zip(missing, await sending(self._pipeline.execute([commands[i] for i in missing])),
                                    strict=True):
                replies[index] = reply
        return [PublishError(f"Redis publish failed: {reply}") if isinstance(reply, Exception)
                else self._routed(user_id, reply) for (user_id, _), reply in zip(messages, replies, strict=True)]

    def _routed(self, user_id: str, reply: list[Any]) -> Routed | PublishError:
        """A send's reply: {live entries reached, offset, live sessions if none was, anomalies}; a
        ``PublishError`` when the user's replicas are live but none could take it (inboxes full)."""
        live, offset, sessions, anomalies = reply
        if anomalies:
            self.anomalies.report(anomalies, user_id=user_id)
        online = self._entries.any_genuine(user_id, live)
        if not online and b"inbox_full" in anomalies:
            return PublishError("the replicas holding this user are not reading their inboxes (full); not delivered")
        recoverable = online or self._entries.any_recoverable(user_id, sessions)
        return Routed(online, offset.decode() if offset and recoverable else None)

    async def lookup(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` has a socket anywhere: the send function, sending nothing."""
        reply = await sending(self.functions.call("send", _user_keys(channel, user_id), self._routing(channel)))
        routed = self._routed(user_id, reply)
        return not isinstance(routed, PublishError) and routed.online

    async def hold(self, user_id: str) -> None:
        """Nothing to do: the presence entry itself routes the user's messages here."""

    async def release(self, user_id: str) -> None:
        """Nothing to do: without the presence entry no message is routed here."""

    def _routing(self, channel: str) -> list[bytes | str | int]:
        """The send functions' first arguments: where inboxes are, who sends, how long they grow, the registry."""
        return [inbox_key(channel, ""), self.process, INBOX_MAX_LEN, registry_key(channel)]

    async def subscribe(self, channel: str) -> None:
        """Check the reading connection and load the routing functions (Redis may have restarted)."""
        try:
            await self._reader.ping()
            await self.functions.load()
            if self._inbox is None:
                await self._warn_of_older_replicas(channel)
            self._inbox = inbox_key(channel, self.process)
            self._consumed_key = consumed_key(channel, self.process)
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        """Stop reading and delete the inbox: nothing more will be read from it."""
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            try:
                await self.client.delete(inbox, self._consumed_key)
            except (RedisError, OSError):
                pass  # both expire by themselves

    async def messages(self) -> AsyncGenerator[Received, None]:
        """Read the inbox with pre-packed commands on a connection of the iterator's own.

        Not through redis-py's commands: at a few hundred messages a second each read
        brings one or two, and redis-py's command path (a task per write to time it out,
        the pool, retries, reply callbacks) cost more CPU than the delivery of what it
        read. One deadline covers each round trip instead. An empty inbox is waited on
        with ``BLMOVE inbox inbox``, which moves nothing (from a list to its own head).
        """
        inbox = self._inbox
        if inbox is None:
            raise QueueUnavailableError("not subscribed")
        advance = _advance_prefix(inbox, self._consumed_key)
        wait = _packed("BLMOVE", inbox, inbox, "LEFT", "LEFT", READ_BLOCK_S)
        pool = self._reader.connection_pool
        # No socket timeout: redis-py would start a task per write to enforce it.
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        try:
            while True:
                try:
                    items = await self._round_trip(connection, advance + _bulk(self._consumed) + _ADVANCE_SUFFIX)
                    if not items:
                        await self._round_trip(connection, wait)
                        continue
                except (RedisError, OSError) as exc:  # OSError: also the deadline's TimeoutError
                    raise QueueUnavailableError(f"Redis connection lost: {exc}") from exc
                for item in items:
                    self._consumed += 1  # handed over: the consumer has it (at shutdown, it may not use it)
                    yield unpacked(item)
        finally:
            await connection.disconnect()
            await pool.disconnect()

    @staticmethod
    async def _round_trip(connection: Any, command: bytes) -> Any:
        """One command and its reply within ``COMMAND_TIMEOUT``; an error reply raises (a lost
        library too: the next ``subscribe`` loads it)."""
        async with asyncio.timeout(COMMAND_TIMEOUT):
            await connection.send_packed_command(command, check_health=False)
            return await connection.read_response()

    async def _warn_of_older_replicas(self, channel: str) -> None:
        """Replicas before directed delivery listened on ``channel`` with SUBSCRIBE: they and
        this one cannot reach each other's users (docs/delivery.md, "Upgrading")."""
        ((_, listening),) = await self._reader.pubsub_numsub(channel)
        if listening:
            logger.warning("replicas of an older version listen on the channel; they and this replica cannot "
                           "reach each other's users: replace them all", extra={"channel": channel,
                                                                                "older_replicas": listening})

    async def ping(self) -> bool:
        return await answers(self.client)


def _user_keys(channel: str, user_id: str) -> list[str]:
    """The send function's keys: the user's presence, sessions and history."""
    return [presence_key(channel, user_id), sessions_key(channel, user_id), history_key(channel, user_id)]


def _bulk(value: bytes | str | int | float) -> bytes:
    """One argument of a command in the Redis protocol."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _packed(*args: bytes | str | int | float) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(_bulk(arg) for arg in args)


# FCALL <advance> 2 <inbox> <consumed> <consumed in all> <batch> <inbox TTL> <counter TTL>
_ADVANCE_SUFFIX = _bulk(READ_BATCH) + _bulk(INBOX_TTL_MS) + _bulk(CONSUMED_TTL_MS)


def _advance_prefix(inbox: str, consumed: str) -> bytes:
    """The ``advance`` call up to its first argument, packed: add the count consumed, then ``_ADVANCE_SUFFIX``."""
    return b"*9\r\n" + b"".join(_bulk(arg) for arg in (b"FCALL", function_name("advance"), 2, inbox, consumed))

