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
from ..base import Presence, Session
from .entries import INSTANCE_TTL_MS, PresenceEntries
from .keys import history_key, presence_key, registry_key, sessions_key
from .scripts import LEAVE, RECORD, REGISTER
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
    deleting keys -- is repaired within one beat; a socket added before that beat
    registers its replica itself if Redis lost it. Signed entries
    (``entries.PresenceEntries``) are re-signed on the way. The same writes push
    the deadlines of the sockets' recoverable sessions forward (``sessions``).

    A recovered session keeps its socket id on whichever replica it lands: an entry
    (or a session) that another process holds now is neither written again nor removed.

    :param recovery_window: seconds a lost connection's session is kept (``RECOVERY_WINDOW_SECONDS``).
    """

    def __init__(self, transport: RedisTransport, *, channel: str, process: str, entries: PresenceEntries,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, recovery_window: float = 0.0) -> None:
        self._transport = transport
        self._channel = channel
        self._process = process
        self._entries = entries
        self._heartbeat_interval = heartbeat_interval
        self._window_ms = int(recovery_window * 1000)
        self._local: dict[str, tuple[str, Session | None]] = {}  # sid -> its user and session, on this replica
        self._stale: dict[str, tuple[str, Session | None, bool]] = {}  # sid -> remove() arguments, as it failed
        self._register: AsyncScript | None = None
        self._record: AsyncScript | None = None
        self._leave: AsyncScript | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Record a socket, once this replica receives the user's messages (``hold``)."""
        try:
            await self._transport.hold(user_id)
        except QueueUnavailableError as exc:
            logger.warning("presence: could not listen for a user", extra={"error": str(exc)})
        self._local[sid] = (user_id, session)
        await asyncio.gather(self._write([(sid, user_id, session)]), self._announce_if_missing())

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        self._local.pop(sid, None)
        try:
            # Unannounced first, then not listened to: what was sent before the entry went still arrives.
            await self._withdraw(user_id, sid, session, keep)
            await self._transport.release(user_id)
        except (RedisError, OSError, QueueUnavailableError) as exc:
            self._stale[sid] = (user_id, session, keep)
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
        added = await self._announce()
        for sid, (user_id, session, keep) in list(self._stale.items()):
            await self._withdraw(user_id, sid, session, keep)
            self._stale.pop(sid, None)
        if not self._local:
            return
        snapshot = list(self._local.items())
        for start in range(0, len(snapshot), WRITE_CHUNK):
            await self._write([(sid, user, session) for sid, (user, session) in snapshot[start:start + WRITE_CHUNK]])
        # A socket that left while the rewrite was in flight must not come back to life.
        for sid, (user, session) in snapshot:
            if sid not in self._local and sid not in self._stale:
                await self.remove(user, sid, session, keep=True)
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
            # Sockets still here lost their connection with this replica: their sessions are kept.
            await asyncio.gather(*(self._withdraw(user_id, sid, session, True)
                                   for sid, (user_id, session) in self._local.items()))
            await (await self._transport.redis()).zrem(registry_key(self._channel), self._process)
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not withdraw on close", extra={"error": str(exc)})

    async def _announce(self) -> bool:
        """Vouch for this replica in the registry; whether it was missing there."""
        client = await self._transport.redis()
        if self._register is None:  # the client exists once Redis was first reached
            self._register = client.register_script(REGISTER)
        return bool(await self._register(keys=[registry_key(self._channel)], args=[self._process, INSTANCE_TTL_MS]))

    async def _announce_if_missing(self) -> None:
        """Vouch for this replica now if the registry lacks it. Redis restarted empty: until the next
        heartbeat, a socket that connects meanwhile would count as a dead replica's, and its
        messages would be stored for a recovery that never comes instead of sent."""
        try:
            client = await self._transport.redis()
            if await client.zscore(registry_key(self._channel), self._process) is None:
                await self._announce()
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not check this replica's registration", extra={"error": str(exc)})

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

    async def _write(self, sockets: Iterable[tuple[str, str, Session | None]]) -> None:
        """Record sockets (``(sid, user id, session)``) and push their sessions' deadlines forward;
        a failure is logged and left to the next heartbeat, which writes all again."""
        try:
            client = await self._transport.redis()
            if self._record is None:
                self._record = client.register_script(RECORD)
            head: list[str | int] = [PRESENCE_TTL_S, self._process, INSTANCE_TTL_MS + self._window_ms]
            calls: list[tuple[list[str], list[str | int]]] = [
                (self._keys(user_id), [sid, self._entries.value(user_id, sid, self._process),
                                       *((session.pid, session.epoch) if session else ("", ""))])
                for sid, user_id, session in sockets]
            # One script call per chunk on one Redis: read reply by reply, a pipeline of 200 commands
            # cost more CPU than the rest of a beat. A cluster's keys lie in many slots: one call per
            # socket, each sent to the node holding its user.
            if isinstance(client, RedisCluster):
                await asyncio.gather(*(self._record(keys=keys, args=[*head, *args]) for keys, args in calls))
                return
            await self._record(keys=[key for keys, _ in calls for key in keys],
                               args=[*head, *(arg for _, args in calls for arg in args)])
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not record sockets", extra={"error": str(exc)})

    async def _withdraw(self, user_id: str, sid: str, session: Session | None, keep: bool) -> None:
        """Remove a socket's entry, unless another process holds the sid now; end its session, or
        keep it for the recovery window, unless another connection took it over."""
        if self._leave is None:
            self._leave = (await self._transport.redis()).register_script(LEAVE)
        await self._leave(keys=self._keys(user_id)[:2], args=[
            sid, self._process, session.pid if session else "", session.epoch if session else "",
            "keep" if keep else "end", self._window_ms])

    def _keys(self, user_id: str) -> list[str]:
        """A user's presence, sessions and history, which the scripts write together."""
        return [presence_key(self._channel, user_id), sessions_key(self._channel, user_id),
                history_key(self._channel, user_id)]
