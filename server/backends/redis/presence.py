"""Presence for all replicas: per-user Redis hashes, tied to live replicas by heartbeats.

The same entries route messages: a message for a user goes to the inboxes of the
replica processes they name (``transport.RedisTransport.publish_to_user``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ...errors import PublishError, QueueBusyError, QueueUnavailableError
from ..base import Presence
from .entries import INSTANCE_TTL_MS, PresenceEntries
from .keys import presence_key, registry_key
from .scripts import RECORD, REGISTER
from .transport import RedisTransport

__all__ = ["RedisPresence"]

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 3.0
# Sockets a heartbeat writes per round trip. The event loop delivers messages between
# round trips: writing 500 sockets in one pipeline held it for 6-18 ms at every beat.
WRITE_CHUNK = 100
# Every heartbeat refreshes it; it only clears the hashes of users whose replicas all died.
PRESENCE_TTL_S = 60


class RedisPresence(Presence):
    """Sockets in per-user Redis hashes, tied to replicas by a heartbeat.

    A replica that dies stops its heartbeat; within ``INSTANCE_TTL_MS`` it drops out
    of the registry and its sockets stop counting. Entries name the replica
    *process* (its instance id plus a random suffix), so a replacement started
    under the same ``INSTANCE_ID`` never revives a dead process's sockets.

    Every heartbeat writes all of this replica's sockets again (an HSET and an
    EXPIRE each, ``WRITE_CHUNK`` sockets per round trip), so whatever
    removed them -- Redis restarted empty, a write that failed, a neighbour
    deleting keys -- is repaired within one beat. Signed entries
    (``entries.PresenceEntries``) are re-signed on the way.
    """

    def __init__(self, transport: RedisTransport, *, channel: str, process: str, entries: PresenceEntries,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self._transport = transport
        self._channel = channel
        self._process = process
        self._entries = entries
        self._heartbeat_interval = heartbeat_interval
        self._local: dict[str, str] = {}  # sid -> user id, the sockets of this replica
        self._stale: set[tuple[str, str]] = set()  # (user id, sid) whose removal failed
        self._register: AsyncScript | None = None
        self._record: AsyncScript | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def add(self, user_id: str, sid: str) -> None:
        """Record a socket, once this replica receives the user's messages (``hold``)."""
        try:
            await self._transport.hold(user_id)
        except QueueUnavailableError as exc:
            logger.warning("presence: could not listen for a user", extra={"error": str(exc)})
        self._local[sid] = user_id
        await self._write([(user_id, sid)])

    async def remove(self, user_id: str, sid: str) -> None:
        self._local.pop(sid, None)
        try:
            # Unannounced first, then not listened to: what was sent before the entry went still arrives.
            await (await self._transport.redis()).hdel(presence_key(self._channel, user_id), sid)
            await self._transport.release(user_id)
        except (RedisError, OSError, QueueUnavailableError) as exc:
            self._stale.add((user_id, sid))
            logger.warning("presence: could not remove a socket", extra={"error": str(exc)})

    async def is_online(self, user_id: str) -> bool:
        try:
            return await self._transport.lookup(self._channel, user_id)
        except QueueBusyError:
            raise
        except PublishError as exc:  # the lookup is the routing script sending nothing
            raise QueueUnavailableError(f"presence lookup failed: {exc}") from exc

    async def heartbeat(self) -> None:
        """Vouch for this replica in the registry and write every socket of this replica again."""
        client = await self._transport.redis()
        if self._register is None:  # the client exists once Redis was first reached
            self._register = client.register_script(REGISTER)
        added = await self._register(keys=[registry_key(self._channel)], args=[self._process, INSTANCE_TTL_MS])
        if self._stale:
            stale = set(self._stale)
            async with client.pipeline(transaction=False) as pipe:
                for user_id, sid in stale:
                    pipe.hdel(presence_key(self._channel, user_id), sid)
                await pipe.execute()
            self._stale -= stale
        if not self._local:
            return
        snapshot = list(self._local.items())
        for start in range(0, len(snapshot), WRITE_CHUNK):
            await self._write([(user, sid) for sid, user in snapshot[start:start + WRITE_CHUNK]])
        # A socket that left while the rewrite was in flight must not come back to life.
        for sid, user in snapshot:
            if sid not in self._local:
                await self.remove(user, sid)
        if added:
            logger.info("presence: sockets announced again", extra={"sockets": len(self._local)})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._beat_forever(), name="presence-heartbeat")

    async def close(self) -> None:
        if self._task is not None:
            self._stopping.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            async with (await self._transport.redis()).pipeline(transaction=False) as pipe:
                for sid, user_id in self._local.items():
                    pipe.hdel(presence_key(self._channel, user_id), sid)
                pipe.zrem(registry_key(self._channel), self._process)
                await pipe.execute()
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not withdraw on close", extra={"error": str(exc)})

    async def _beat_forever(self) -> None:
        # A flag, not only cancel(): redis-py may turn a cancellation in mid-command
        # into a connection error, which this loop would otherwise survive.
        while not self._stopping.is_set():
            try:
                await self.heartbeat()
            except (RedisError, OSError, QueueUnavailableError) as exc:
                logger.debug("presence heartbeat failed: %s", exc)
            try:
                await asyncio.wait_for(self._stopping.wait(), self._heartbeat_interval)
            except TimeoutError:
                pass

    async def _write(self, entries: Iterable[tuple[str, str]]) -> None:
        """Record sockets; a failure is logged and left to the next heartbeat, which writes all again."""
        try:
            client = await self._transport.redis()
            values = [(presence_key(self._channel, user_id), sid, self._entries.value(user_id, sid, self._process))
                      for user_id, sid in entries]
            # One script call per chunk on one Redis: read reply by reply, a pipeline of 200 commands
            # cost more CPU than the rest of a beat. A cluster's keys lie in many slots: its pipeline
            # sends each to the node holding it.
            if isinstance(client, RedisCluster):
                async with client.pipeline(transaction=False) as pipe:
                    for key, sid, value in values:
                        pipe.hset(key, sid, value)
                        pipe.expire(key, PRESENCE_TTL_S)
                    await pipe.execute()
                return
            if self._record is None:
                self._record = client.register_script(RECORD)
            await self._record(keys=[key for key, _, _ in values],
                               args=[PRESENCE_TTL_S, *(part for _, sid, value in values for part in (sid, value))])
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not record sockets", extra={"error": str(exc)})
