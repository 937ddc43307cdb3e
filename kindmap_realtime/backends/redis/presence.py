"""Presence for all replicas: per-user Redis hashes, tied to live replicas by heartbeats.

The same entries route messages: a message for a user goes to the inboxes of the
replica processes they name (``transport.RedisTransport.publish_to_user``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from ...errors import PublishError, QueueBusyError, QueueUnavailableError, SessionTakenError, TooManyConnectionsError
from ..base import Presence, Session
from .anomalies import Anomalies
from .entries import INSTANCE_TTL_MS, SessionEntry, SignedEntries, now_ms
from .keys import consumed_key, history_key, inbox_key, presence_key, registry_key, sessions_key
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

    Every heartbeat writes all of this replica's sockets again (``WRITE_CHUNK`` sockets
    per round trip), so whatever removed them -- Redis restarted empty, a write that
    failed, a neighbour deleting keys -- is repaired within one beat; a socket added
    before that beat registers its replica itself if Redis lost it. Entries are signed
    (``entries.SignedEntries``) and re-signed on the way. The same writes push the
    deadlines of the sockets' recoverable sessions forward (``sessions``), drop expired
    sessions and trim the users' histories to their limit.

    A recovered session keeps its socket id on whichever replica it lands: an entry
    (or a session) that another process holds now is neither written again nor removed,
    and the socket of this replica that held it is disconnected (``on_taken``) once the
    other process's entry proves genuine.

    :param recovery_window: seconds a lost connection's session is kept (``RECOVERY_WINDOW_SECONDS``).
    :param max_sockets: most live sockets of one user on all replicas (0: no cap).
    :param max_sessions: most recoverable sessions of one user; a new one drops the oldest.
    """

    def __init__(self, transport: RedisTransport, *, channel: str, process: str, entries: SignedEntries,
                 anomalies: Anomalies | None = None, heartbeat_interval: float = HEARTBEAT_INTERVAL,
                 recovery_window: float = 0.0, max_sockets: int = 0, max_sessions: int = 0) -> None:
        self._transport = transport
        self._channel = channel
        self._process = process
        self._entries = entries
        self._anomalies = anomalies or transport.anomalies
        self._heartbeat_interval = heartbeat_interval
        self._window_ms = int(recovery_window * 1000)
        self._unattended_ms = INSTANCE_TTL_MS + self._window_ms
        self._max_sockets = max_sockets
        self._max_sessions = max_sessions
        self._local: dict[str, tuple[str, Session | None]] = {}  # sid -> its user and session, on this replica
        self._stale: dict[str, tuple[str, Session | None, bool]] = {}  # sid -> remove() arguments, as it failed
        self._on_taken: Callable[[str], Awaitable[None]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def on_taken(self, callback: Callable[[str], Awaitable[None]]) -> None:
        self._on_taken = callback

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Record a socket, once this replica receives the user's messages (``hold``), unless the
        user is at ``max_sockets`` or its claimed session was taken over meanwhile. Raises
        ``QueueUnavailableError`` when this replica cannot listen for the user: an entry written
        then would have messages answered "sent" that nobody reads."""
        await self._transport.hold(user_id)
        try:
            await self._join(user_id, sid, session)
        except (TooManyConnectionsError, SessionTakenError):
            await self._transport.release(user_id)
            raise
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not record a socket; the next heartbeat will", extra={"error": str(exc)})
        self._local[sid] = (user_id, session)
        await self._announce_if_missing()

    async def _join(self, user_id: str, sid: str, session: Session | None) -> None:
        """One atomic step: the cap on the user's live sockets, the session, the presence entry.
        Entries over the cap that fail their signature check are someone else's: removed, once."""
        forged: list[str] = []
        while True:
            reply = await self._call("add_socket", self._keys(user_id), [
                sid, self._entries.presence(user_id, sid, self._process), self._process,
                await self._registry(), self._max_sockets, PRESENCE_TTL_S,
                *self._session_args(user_id, sid, session, self._unattended_ms),
                "0" if session is not None and session.claimed else "1", self._max_sessions, self._unattended_ms,
                self._entries.skew_ms, self._entries.stale_ms, *forged])
            status, detail, anomalies = reply
            self._anomalies.report(anomalies, user_id=user_id)
            if status == b"ok":
                return
            if status == b"taken":
                raise SessionTakenError("another connection recovered this session meanwhile; connect again")
            pairs = list(zip(detail[::2], detail[1::2], strict=True))
            fake = [field.decode() for field, value in pairs
                    if not self._entries.genuine_presence(user_id, field.decode("utf-8", "replace"), value)]
            if forged or not fake:
                raise TooManyConnectionsError(f"this user already holds {self._max_sockets} connections "
                                              "(MAX_SOCKETS_PER_USER); close one first")
            self._anomalies.report(["forged_presence"] * len(fake), user_id=user_id)
            forged = fake

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        """Withdraw a socket's entry (and end or keep its session); stop listening for its user
        only if ``add`` recorded it: a socket refused, or removed twice, releases nothing, so
        the user's other sockets here keep hearing their messages."""
        held = self._local.pop(sid, None) is not None
        try:
            # Unannounced first, then not listened to: what was sent before the entry went still arrives.
            await self._withdraw(user_id, sid, session, keep)
        except (RedisError, OSError, QueueUnavailableError) as exc:
            self._stale[sid] = (user_id, session, keep)
            logger.warning("presence: could not remove a socket", extra={"error": str(exc)})
        if held:
            try:
                await self._transport.release(user_id)
            except (RedisError, OSError, QueueUnavailableError) as exc:
                logger.warning("presence: could not stop listening for a user", extra={"error": str(exc)})

    async def is_online(self, user_id: str) -> bool:
        try:
            return await self._transport.lookup(self._channel, user_id)
        except QueueBusyError:
            raise
        except PublishError as exc:  # the lookup is the routing function sending nothing
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
        """Vouch for this replica in the registry (dropping dead replicas and their inboxes);
        whether it was missing there."""
        functions = await self._transport.functions()
        cluster = self._transport.mode == "redis-cluster"  # no inboxes there, and other slots
        inboxes, consumed = ("", "") if cluster else (inbox_key(self._channel, ""), consumed_key(self._channel, ""))
        return bool(await functions.call("register", [registry_key(self._channel)],
                                         [self._process, INSTANCE_TTL_MS, inboxes, consumed]))

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
            except Exception:  # a bug, or Redis data nobody foresaw: the next beat must still run
                logger.exception("presence heartbeat failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), self._heartbeat_interval)
            except TimeoutError:
                pass

    async def _write(self, sockets: Iterable[tuple[str, str, Session | None]]) -> None:
        """Record sockets (``(sid, user id, session)``) and push their sessions' deadlines forward;
        a failure is logged and left to the next heartbeat, which writes all again."""
        sockets = list(sockets)
        try:
            contested = await self._record(sockets, force=frozenset())
            if not contested:
                return
            taken = {sid for sid, user, session in sockets if sid in contested and self._claimed_since(
                user, sid, session, *contested[sid])}
            forged = [(sid, user, session) for sid, user, session in sockets if sid in contested and sid not in taken]
            if forged:
                self._anomalies.report(["forged_presence"] * len(forged))
                await self._record(forged, force=frozenset(sid for sid, _, _ in forged))
            for sid in taken:
                await self._taken(sid)
        except (RedisError, OSError, QueueUnavailableError) as exc:
            logger.warning("presence: could not record sockets", extra={"error": str(exc)})

    def _claimed_since(self, user_id: str, sid: str, session: Session | None, presence: bytes, held: bytes) -> bool:
        """Whether another process holds ``sid`` because a later claim took its session over: its
        presence entry genuine, and the session's signed entry claimed after ours (``tat`` only grows
        with claims). A replayed entry of the process this socket was recovered from is neither."""
        if session is None or not self._entries.genuine_presence(user_id, sid, presence):
            return False
        entry = self._entries.parse_session(user_id, session.pid, held) if held else None
        return entry is not None and entry.tat > session.tat

    async def _record(self, sockets: list[tuple[str, str, Session | None]], *,
                      force: frozenset[str]) -> dict[str, tuple[bytes, bytes]]:
        """The heartbeat function for ``sockets``; for each sid another process's entry holds, that
        entry and the socket's session entry now.

        One call per chunk on one Redis: a pipeline of 200 commands cost more CPU than the rest of
        a beat. A cluster's keys lie in many slots: one call per socket, each to its user's node."""
        head: list[str | int] = [PRESENCE_TTL_S, self._process, self._unattended_ms, self._entries.skew_ms]
        calls = [(self._keys(user_id), [sid, self._entries.presence(user_id, sid, self._process),
                                        *self._session_args(user_id, sid, session, self._unattended_ms),
                                        "1" if sid in force else ""])
                 for sid, user_id, session in sockets]
        if isinstance(await self._transport.redis(), RedisCluster):
            replies = await asyncio.gather(*(self._call("record", keys, [*head, *args]) for keys, args in calls))
        else:
            replies = [await self._call("record", [key for keys, _ in calls for key in keys],
                                        [*head, *(arg for _, args in calls for arg in args)])]
        contested: dict[str, tuple[bytes, bytes]] = {}
        for found, anomalies in replies:
            self._anomalies.report(anomalies)
            contested.update((sid.decode(), (value, held))
                             for sid, value, held in zip(found[::3], found[1::3], found[2::3], strict=True))
        return contested

    async def _taken(self, sid: str) -> None:
        """Another process proved it holds ``sid`` now: this replica's socket is a leftover."""
        user_id, _ = self._local.pop(sid, (None, None))
        if user_id is not None:
            await self._transport.release(user_id)
        logger.info("presence: a socket's session was recovered elsewhere; disconnecting it here", extra={"sid": sid})
        if self._on_taken is not None:
            await self._on_taken(sid)

    async def _withdraw(self, user_id: str, sid: str, session: Session | None, keep: bool) -> None:
        """Remove a socket's entry, unless another process holds the sid now; end its session, or
        keep it for the recovery window, unless another connection took it over."""
        pid, epoch, kept = self._session_args(user_id, sid, session, self._window_ms)
        await self._call("leave", self._keys(user_id), [
            sid, self._process, pid, epoch, "keep" if keep else "end", kept, self._window_ms,
            await self._registry(), self._entries.skew_ms, self._entries.stale_ms])

    async def _registry(self) -> str:
        """The registry, for the functions to tell live replicas by; '' on a cluster, where it lies in
        another slot than the user's keys (signed entries' age tells there)."""
        await self._transport.chosen()
        return "" if self._transport.mode == "redis-cluster" else registry_key(self._channel)

    def _session_args(self, user_id: str, sid: str, session: Session | None, lasts_ms: int) -> list[str]:
        """pid, epoch and the signed entry of ``session`` with its deadline ``lasts_ms`` from now ('' x 3: none)."""
        if session is None:
            return ["", "", ""]
        entry = SessionEntry(now_ms() + lasts_ms, session.epoch, sid, session.start, session.tat, self._process)
        return [session.pid, session.epoch, self._entries.session(user_id, session.pid, entry)]

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await (await self._transport.functions()).call(name, keys, args)

    def _keys(self, user_id: str) -> list[str]:
        """A user's presence, sessions and history, which the functions write together."""
        return [presence_key(self._channel, user_id), sessions_key(self._channel, user_id),
                history_key(self._channel, user_id)]
