"""Per-replica inbox streams on one Redis (not a Redis Cluster: ``sharded``).

Each replica process reads its own Redis stream (its *inbox*) with ``XREAD``
from the last entry it read. A sender appends an envelope only to the inboxes of
the replicas that need it -- those the user's presence entries name -- in the
same script that looks them up, so a replica never reads, let alone decodes, a
message for users it does not hold. Reading from a position, not a live
subscription, means a connection that froze, died silently or was cut by a Redis
outage loses nothing: the replica reconnects and reads on from where it was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from redis.exceptions import NoScriptError, RedisError

from ...errors import PublishError, QueueUnavailableError
from ..base import QueueTransport, Received, Routed
from .client import (
    COMMAND_TIMEOUT,
    MAX_CONNECTIONS,
    answers,
    connect_redis,
    sending,
    without_retries,
)
from .entries import PresenceEntries
from .keys import history_key, inbox_key, presence_key, registry_key, sessions_key
from .pipeline import AutoPipeline
from .scripts import SEND_TO_ALL, SEND_TO_USER

__all__ = ["INBOX_MAX_LEN", "InboxTransport"]

logger = logging.getLogger(__name__)

# A read waits this long for news; no answer within COMMAND_TIMEOUT means the
# connection is dead (or frozen): it is replaced and reading resumes.
READ_BLOCK_MS = 1000
READ_BATCH = 500
# The longest an inbox grows while its replica does not read (frozen, restarting):
# about 40 MB of navigation-sized messages; older ones are dropped, and counted
# when the replica reads again.
INBOX_MAX_LEN = 100_000
# How often a reader trims what it has read and keeps its inbox from expiring.
TRIM_INTERVAL = 1.0
# An inbox outlives its replica this long (longer than the registry vouches for it).
INBOX_TTL_MS = 60_000

class InboxTransport(QueueTransport):
    """Sends through routing scripts on a command client; reads the inbox on a connection of its own.

    The reading connection has no automatic retry: when Redis goes away the
    ``messages()`` iterator raises at once, so the manager knows it is deaf and
    reconnects on its own schedule, then reads on from the last entry it read.

    It owns the command client (``client``), which the presence and key check
    of the same backend share.

    :param process: this replica process's name in presence entries and the registry;
        its inbox is named after it. An emitter, which never reads, passes ``""``.
    :param entries: which presence entries to believe when a send reports whether a user is online.
    """

    def __init__(self, url: str, *, process: str, entries: PresenceEntries,
                 max_connections: int = MAX_CONNECTIONS, pool_timeout: float = COMMAND_TIMEOUT) -> None:
        self.client = connect_redis(url, max_connections=max_connections, pool_timeout=pool_timeout)
        self.process = process
        self._entries = entries
        self._reader = without_retries(self.client, f"kindmap-inbox:{process}")
        self._pipeline = AutoPipeline(self.client.connection_pool.make_connection(),  # type: ignore[no-untyped-call]
                                      max_calls=max_connections, wait_timeout=pool_timeout)
        self._send_to_user = self.client.register_script(SEND_TO_USER)
        self._send_to_all = self.client.register_script(SEND_TO_ALL)
        self._inbox: str | None = None
        self._last_id = b"0-0"  # a new process's inbox is new: everything in it is for us
        self._trimmed_at = 0.0

    async def connect(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def close(self) -> None:
        await self._pipeline.close()
        await self._reader.aclose(close_connection_pool=True)
        await self.client.aclose()

    async def publish(self, channel: str, data: bytes) -> int:
        args = [*self._routing(channel), data]
        return int(await sending(self._send_to_all(args=args)))

    async def publish_to_user(self, channel: str, user_id: str, data: bytes, *, volatile: bool = False) -> Routed:
        (result,) = await self.publish_many_to_user(channel, [(user_id, data)], volatile=volatile)
        if isinstance(result, PublishError):
            raise result
        return result

    async def publish_many_to_user(self, channel: str, messages: Sequence[tuple[str, bytes]], *,
                                   volatile: bool = False) -> list[Routed | PublishError]:
        """All in one round trip, the commands packed here: redis-py's pipeline spends more CPU
        packing each command and checking its scripts than Redis spends running them. They go out
        on the auto-pipeline (``pipeline``), with what concurrent callers send in the same tick."""
        # EVALSHA <sha> 3 <user's keys> <routing...> <envelope> <volatile>: only the keys and envelope vary.
        routing = self._routing(channel)
        start = b"*%d\r\n" % (8 + len(routing)) + _bulk(b"EVALSHA") + _bulk(self._send_to_user.sha) + _bulk(b"3")
        middle = b"".join(_bulk(arg) for arg in routing)
        end = _bulk(b"1" if volatile else b"0")
        commands = [b"".join((start, *(_bulk(key) for key in _user_keys(channel, user_id)), middle, _bulk(data), end))
                    for user_id, data in messages]
        replies = await sending(self._pipeline.execute(commands))
        unknown = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if unknown:  # Redis restarted since the script was loaded: load it, send those again
            await sending(self.client.script_load(SEND_TO_USER))
            for index, reply in zip(unknown, await sending(self._pipeline.execute([commands[i] for i in unknown])),
                                    strict=True):
                replies[index] = reply
        return [PublishError(f"Redis publish failed: {reply}") if isinstance(reply, Exception)
                else Routed(self._entries.any_genuine(user_id, reply[0]), _offset(reply[1]))
                for (user_id, _), reply in zip(messages, replies, strict=True)]

    async def lookup(self, channel: str, user_id: str) -> bool:
        """Whether ``user_id`` has a socket anywhere: the routing script, sending nothing."""
        live, _ = await sending(self._send_to_user(keys=_user_keys(channel, user_id), args=self._routing(channel)))
        return self._entries.any_genuine(user_id, live)

    async def hold(self, user_id: str) -> None:
        """Nothing to do: the presence entry itself routes the user's messages here."""

    async def release(self, user_id: str) -> None:
        """Nothing to do: without the presence entry no message is routed here."""

    def _routing(self, channel: str) -> list[bytes | str | int]:
        """The scripts' first arguments: where inboxes are, who sends, how long they grow, the registry."""
        return [inbox_key(channel, ""), self.process, INBOX_MAX_LEN, registry_key(channel)]

    async def subscribe(self, channel: str) -> None:
        """Check the reading connection; after an outage, count what the inbox dropped meanwhile."""
        inbox = inbox_key(channel, self.process)
        try:
            await self._reader.ping()
            resumed = self._inbox == inbox
            self._inbox = inbox
            if resumed:
                await self._report_overflow(inbox)
            else:
                await self._warn_of_older_replicas(channel)
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        """Stop reading and delete the inbox: nothing more will be read from it."""
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            try:
                await self.client.delete(inbox)
            except (RedisError, OSError):
                pass  # it expires by itself

    async def messages(self) -> AsyncGenerator[Received, None]:
        """Read the inbox with pre-packed ``XREAD``s on a connection of the iterator's own.

        Not through redis-py's commands: at a few hundred messages a second each
        ``XREAD`` brings one or two, and redis-py's command path (a task per write
        to time it out, the pool, retries, reply callbacks) cost more CPU than the
        delivery of what it read. One deadline covers each round trip instead.
        """
        inbox = self._inbox
        if inbox is None:
            raise QueueUnavailableError("not subscribed")
        read_from = _xread_prefix(inbox)
        pool = self._reader.connection_pool
        # No socket timeout: redis-py would start a task per write to enforce it.
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        try:
            while True:
                try:
                    async with asyncio.timeout(COMMAND_TIMEOUT):
                        await connection.send_packed_command(read_from + _bulk(self._last_id), check_health=False)
                        reply = await connection.read_response()
                    if time.monotonic() - self._trimmed_at >= TRIM_INTERVAL:
                        await self._trim(inbox)
                except (RedisError, OSError) as exc:  # OSError: also the deadline's TimeoutError
                    raise QueueUnavailableError(f"Redis connection lost: {exc}") from exc
                for entry_id, fields in _entries(reply):
                    self._last_id = entry_id
                    data = _field(fields, b"m")
                    if data is not None:
                        yield data, _offset(_field(fields, b"o"))
        finally:
            await connection.disconnect()
            # The reader's other connection (trims) went the same way: the next subscribe starts afresh.
            await pool.disconnect()

    async def _trim(self, inbox: str) -> None:
        """Drop what was read; keep the inbox alive while this replica is."""
        self._trimmed_at = time.monotonic()
        async with self._reader.pipeline(transaction=False) as pipe:
            pipe.xtrim(inbox, minid=self._last_id, approximate=False)
            pipe.pexpire(inbox, INBOX_TTL_MS)
            await pipe.execute()

    async def _warn_of_older_replicas(self, channel: str) -> None:
        """Replicas before directed delivery listened on ``channel`` with SUBSCRIBE: they and
        this one cannot reach each other's users (README, "Upgrading to directed delivery")."""
        ((_, listening),) = await self._reader.pubsub_numsub(channel)
        if listening:
            logger.warning("replicas of an older version listen on the channel; they and this replica cannot "
                           "reach each other's users: replace them all", extra={"channel": channel,
                                                                                "older_replicas": listening})

    async def _report_overflow(self, inbox: str) -> None:
        """Log an inbox that dropped unread entries (``INBOX_MAX_LEN``) while this replica could not read."""
        try:
            info = await self._reader.xinfo_stream(inbox)
        except RedisError:
            return  # no inbox: nothing was sent meanwhile, or Redis lost it with everything else
        deleted = info.get("max-deleted-entry-id", b"0-0")
        if _entry_id(deleted) > _entry_id(self._last_id):
            logger.error("inbox overflowed while this replica could not read; messages were lost",
                         extra={"inbox": inbox, "last_read": self._last_id.decode(), "dropped_up_to": deleted.decode()})

    async def ping(self) -> bool:
        return await answers(self.client)


def _user_keys(channel: str, user_id: str) -> list[str]:
    """The send script's keys: the user's presence, sessions and history."""
    return [presence_key(channel, user_id), sessions_key(channel, user_id), history_key(channel, user_id)]


def _offset(value: bytes | None) -> str | None:
    """A stored message's offset as the scripts return it (empty: not stored)."""
    return value.decode() if value else None


def _bulk(value: bytes | str | int) -> bytes:
    """One argument of a command in the Redis protocol."""
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _xread_prefix(inbox: str) -> bytes:
    """``XREAD COUNT <READ_BATCH> BLOCK <READ_BLOCK_MS> STREAMS <inbox>``, packed: add the id to read after."""
    args = (b"XREAD", b"COUNT", READ_BATCH, b"BLOCK", READ_BLOCK_MS, b"STREAMS", inbox)
    return b"*%d\r\n" % (len(args) + 1) + b"".join(_bulk(arg) for arg in args)


def _entries(reply: Any) -> list[Any]:
    """The ``[id, [field, value, ...]]`` entries of one stream's ``XREAD`` reply, unparsed: a list
    of ``[stream, entries]`` in RESP2, a map in RESP3, nothing when the block ran out."""
    if not reply:
        return []
    streams = reply.values() if isinstance(reply, dict) else (entries for _stream, entries in reply)
    return [entry for entries in streams for entry in entries]


def _field(fields: Sequence[bytes], name: bytes) -> bytes | None:
    """The value of ``name`` in a stream entry's flat ``[field, value, ...]`` list."""
    for index in range(0, len(fields) - 1, 2):
        if fields[index] == name:
            return fields[index + 1]
    return None


def _entry_id(value: bytes) -> tuple[int, int]:
    ms, _, seq = value.partition(b"-")
    return int(ms), int(seq or 0)
