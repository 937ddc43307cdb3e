"""Socket.IO connection state recovery, on whichever replica a client comes back to.

socket.io-client (4.6 and newer) keeps the private session id (``pid``) that the
server sent in its CONNECT reply and the offset that came last with an event; after
a lost connection it sends both in its CONNECT packet (next to its auth). When the
session is still within ``RECOVERY_WINDOW_SECONDS`` the socket gets its id and user
room back, then every message the user was sent after that offset, in order, before
anything newer, and ``socket.recovered`` is ``true``. Otherwise the connection
starts a new session and ``recovered`` is ``false``: the application resyncs.

Sessions and histories live in the backend (``SessionStore``), so a client recovers
on any replica, also after its own replica died. The steps, per connection:

1. the packet guard hands the CONNECT packet here first (``before_connect``): a
   session named by ``pid`` is claimed for this connection (one claim of a pid at a
   time on this replica, and the store lets only one connection take it over), what
   it missed is read -- at most ``max_replay_bytes``, or the client gets a new session
   -- its old socket is kicked wherever a signed presence entry says it still is, and
   its socket id is the one python-socketio gives out;
2. ``on_connect`` (the gateway) tracks the socket before it joins its user's room:
   live events for it are held from then on (``Tracked.held``);
3. after the CONNECT reply (which carries the ``pid``), ``replay`` writes what was
   read, then what the history received since, then the held events not already
   written. A socket that leaves meanwhile -- a newer claim of its session kicks it --
   stops its replay.

A new session replays too: what was sent between its start and the moment its
presence was written reaches it, rather than nobody.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from kindmap_realtime.backends.base import CatchUp, Claim, HistoryGone, Session, SessionStore
from kindmap_realtime.errors import InvalidEnvelopeError, QueueUnavailableError
from kindmap_realtime.log_throttle import LogThrottle
from kindmap_realtime.messages.rooms import user_room

from ..metrics import Metrics

__all__ = ["Held", "Recovery", "Tracked", "is_offset", "wants_recovery"]

logger = logging.getLogger(__name__)

MAX_PID_LENGTH = 64
# How long a replayed offset is remembered: far longer than a message takes from Redis to a replica.
REPLAYED_MEMORY_S = 10.0
_OFFSET = re.compile(r"(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")
_MAX_ID_PART = 2**64 - 1  # each part of a stream entry id is an unsigned 64-bit number

# A live event held back during a replay: its offset (None: not stored), event and arguments.
Held = tuple[str | None, str, list[Any]]


def wants_recovery(auth: object) -> bool:
    """Every client takes part but one that says ``{"recovery": false}`` in its auth: a client
    whose handlers do not expect the offset that ends each stored event (python-socketio's)."""
    return not (isinstance(auth, Mapping) and auth.get("recovery") is False)


def is_offset(value: object) -> bool:
    """Whether a client's ``offset`` can be a history entry id as the backend writes them
    (no leading zeros: the Redis script compares them as text; nothing past 64 bits, which
    Redis refuses with an error)."""
    match = _OFFSET.fullmatch(value) if isinstance(value, str) else None
    return match is not None and all(int(part) <= _MAX_ID_PART for part in match.groups())


def _skips(last: str, offset: str) -> bool:
    """Whether ``offset`` lies past the one right after ``last`` in the same history generation."""
    last_generation, _, last_seq = last.partition("-")
    generation, _, seq = offset.partition("-")
    return generation == last_generation and seq.isdigit() and last_seq.isdigit() and int(seq) > int(last_seq) + 1


@dataclass(slots=True)
class Tracked:
    """A socket of this replica that has a session.

    ``last_offset``: of the last stored event written to it (its session's start before any);
    ``missed``: what its claim read for the replay, ``(offset, envelope)``;
    ``held``: live events waiting for the replay to finish, ``None`` once it has (a leaving
    socket's are never written: ``silence``);
    ``replayed``: offsets the replay passed, for a while after it: a message both in the history
    and on its way to this replica when the replay read the history arrives again, live.
    """

    user_id: str
    session: Session
    recovered: bool
    last_offset: str
    missed: list[tuple[str, bytes]] = field(default_factory=list)
    held: list[Held] | None = field(default_factory=list)
    replayed: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Claimed:
    """A claim a CONNECT made, waiting for its ``on_connect``."""

    user_id: str
    claim: Claim
    missed: list[tuple[str, bytes]]


class _TooLarge(Exception):
    """What a client missed exceeds what one replay may write."""


Identify = Callable[[Mapping[str, Any]], str]  # auth -> user id; raises on bad credentials
Send = Callable[[str, str, list[Any], str | None], Awaitable[None]]  # sid, event, args, offset
Kick = Callable[[str, str], Awaitable[None]]  # a user id and one of their socket ids, wherever it is connected
Open = Callable[[bytes], dict[str, Any]]  # a stored envelope, verified; raises InvalidEnvelopeError


class Recovery(CatchUp):
    """This replica's side of recovery: claims sessions, tracks its sockets', replays histories,
    and catches its sockets up when the queue hears their users again (``CatchUp``).

    :param store: the backend's sessions and histories.
    :param open_envelope: verifies and decodes a stored envelope (the manager's signing key).
    :param send: writes one event to one socket, with its offset, bypassing the hold.
    :param kick: disconnects a user's socket on whichever replica holds it, awaiting it when
        it is this one (the old socket of a claimed session).
    :param max_age: seconds a signed message can have been kept for recovery (a session's window
        plus how long a crashed replica's sessions last, plus the clock skew allowed); an older
        one in a history was put there by someone else, and is dropped as stale.
    :param max_replay_bytes: most bytes of stored messages one replay writes (``RECOVERY_MAX_REPLAY_BYTES``).
    """

    def __init__(self, store: SessionStore, *, metrics: Metrics, open_envelope: Open, send: Send,
                 kick: Kick, max_age: float, max_replay_bytes: int) -> None:
        self.store = store
        self.max_age = max_age
        self.max_replay_bytes = max_replay_bytes
        self.metrics = metrics
        self._open_envelope = open_envelope
        self._send = send
        self._kick = kick
        self.sockets: dict[str, Tracked] = {}  # sid -> its session; read for every event delivered
        self._claims: dict[str, _Claimed] = {}  # eio sid -> its claim, from CONNECT to on_connect
        self._claiming: dict[str, str] = {}  # pid -> the eio sid claiming it, from CONNECT to on_connect
        self._paused: set[str] = set()  # sids whose live events wait for a catch-up
        self._filling: set[asyncio.Task[None]] = set()  # catch-ups of gaps in what came live
        self._throttle = LogThrottle()

    # --- the handshake ---------------------------------------------------

    async def before_connect(self, eio_sid: str, auth: Any, identify: Identify) -> None:
        """A CONNECT packet, before python-socketio sees it: claim the session it names, if any."""
        self.abandon(eio_sid)
        if not isinstance(auth, Mapping) or not wants_recovery(auth) or "pid" not in auth:
            return
        pid, offset = auth["pid"], auth.get("offset")
        if not isinstance(pid, str) or not 0 < len(pid) <= MAX_PID_LENGTH:
            self._failed("unknown")
            return
        if offset is not None and not is_offset(offset):
            self._failed("invalid_offset")
            return
        try:
            user_id = identify(auth)
        except Exception:  # refused again, and answered, by the connect handler
            return
        if pid in self._claiming:  # another connection here is claiming it right now
            self._failed("taken")
            return
        self._claiming[pid] = eio_sid
        claimed = None
        try:
            claimed = await self._claim(user_id, pid, offset)
        finally:
            if claimed is not None:
                self._claims[eio_sid] = claimed  # the pid stays claimed here until on_connect
            elif self._claiming.get(pid) == eio_sid:
                del self._claiming[pid]

    async def _claim(self, user_id: str, pid: str, offset: str | None) -> _Claimed | None:
        """Take the session over, read what it missed, and kick its old socket; ``None`` (counted
        and logged) when the connection gets a new session instead."""
        try:
            claim = await self.store.claim(user_id, pid, offset)
        except QueueUnavailableError as exc:
            self._failed("unavailable", error=str(exc))
            return None
        if isinstance(claim, str):
            self._failed(claim)
            return None
        try:
            missed = await self._read_missed(user_id, claim.session.start)
        except (HistoryGone, _TooLarge, QueueUnavailableError) as exc:
            self._failed("too_large" if isinstance(exc, _TooLarge) else
                         "gone" if isinstance(exc, HistoryGone) else "unavailable", error=str(exc))
            await self._end(user_id, claim.session)
            return None
        if claim.vouched:
            try:
                await self._kick(user_id, claim.sid)
            except Exception as exc:  # its replica is gone, or the queue is: the old socket closes by itself
                logger.warning("could not disconnect the old socket of a recovered session",
                               extra={"error": str(exc)})
        return _Claimed(user_id, claim, missed)

    async def _read_missed(self, user_id: str, start: str) -> list[tuple[str, bytes]]:
        """Every stored message after ``start``, at most ``max_replay_bytes`` of them (else ``_TooLarge``)."""
        missed: list[tuple[str, bytes]] = []
        size = 0
        async for page in self.store.history(user_id, start):
            size += sum(len(envelope) for _, envelope in page)
            if size > self.max_replay_bytes:
                raise _TooLarge(f"over {self.max_replay_bytes} bytes were missed since {start}")
            missed.extend(page)
        return missed

    async def _end(self, user_id: str, session: Session) -> None:
        try:
            await self.store.end(user_id, session)
        except QueueUnavailableError as exc:  # it expires by itself
            logger.debug("could not end a session: %s", exc)

    def claimed_sid(self, eio_sid: str) -> str | None:
        """The socket id python-socketio must give this connection: its recovered session's."""
        claimed = self._claims.get(eio_sid)
        return claimed.claim.sid if claimed else None

    async def start(self, sid: str, eio_sid: str, user_id: str, auth: Any) -> Tracked | None:
        """In ``on_connect``, before the socket joins its room: its session (recovered, or new), from
        which on its live events are held until ``replay``. ``None``: the socket goes without one."""
        claimed = self._claims.pop(eio_sid, None)  # its pid stays claimed here until ``abandon``
        if claimed is not None and claimed.user_id == user_id and claimed.claim.sid == sid:
            tracked = Tracked(user_id, claimed.claim.session, True, claimed.claim.session.start, claimed.missed)
        elif not wants_recovery(auth):
            return None
        else:
            try:
                session = await self.store.open(user_id, sid)
            except QueueUnavailableError as exc:
                self._report("no_session", logging.WARNING, "no recoverable session for a new socket", error=str(exc))
                return None
            tracked = Tracked(user_id, session, False, session.start)
        self.sockets[sid] = tracked
        return tracked

    def pid_of(self, sid: str) -> str | None:
        """The private session id the CONNECT reply to ``sid`` carries."""
        tracked = self.sockets.get(sid)
        return tracked.session.pid if tracked else None

    def forget(self, sid: str) -> Tracked | None:
        """The socket left its rooms (``LocalDelivery.basic_disconnect``)."""
        self._paused.discard(sid)
        return self.sockets.pop(sid, None)

    def silence(self, sid: str) -> Tracked | None:
        """A socket leaving: it is written nothing from now on (what is stored for its session
        reaches its client when it recovers) until the manager forgets it with its rooms."""
        tracked = self.sockets.get(sid)
        self._paused.discard(sid)
        if tracked is not None:
            tracked.held = []  # held, never released
        return tracked

    def abandon(self, eio_sid: str) -> None:
        """The Engine.IO session closed, or its CONNECT was handled (its socket joined or was
        refused): drop a claim it made and nothing used, and free the pid it claimed for another
        connection here. Not sooner: a second claim while the first socket is still joining would
        get the same socket id. An unused claim keeps the session taken over until its deadline."""
        self._claims.pop(eio_sid, None)
        for pid in [pid for pid, claimer in self._claiming.items() if claimer == eio_sid]:
            del self._claiming[pid]

    # --- the replay --------------------------------------------------------

    async def replay(self, sid: str) -> int:
        """Write what the claim read, then what the user's history received after it, then the
        live events held meanwhile that were not among them; returns how many came from the
        history. It stops when the socket leaves (a newer claim of its session kicks it)."""
        tracked = self.sockets.get(sid)
        if tracked is None:
            return 0
        missed, tracked.missed = tracked.missed, []
        replayed = await self._write_history(sid, tracked, tracked.session.start, missed, "lost_during_replay")
        if tracked.recovered:
            self.metrics.recoveries.inc()
            self.metrics.replayed.inc(replayed)
            logger.info("session recovered", extra={"user_id": tracked.user_id, "sid": sid, "replayed": replayed})
        return replayed

    # --- catching up after the queue heard a user again ------------------------

    def pause(self, user_ids: Collection[str]) -> None:
        """The queue is about to listen to these users again: hold their sockets' live events
        (a socket in its replay holds already, and its replay reads the history to its end)."""
        users = set(user_ids)
        for sid, tracked in self.sockets.items():
            if tracked.user_id in users and tracked.held is None:
                tracked.held = []
                self._paused.add(sid)

    async def catch_up(self, user_ids: Collection[str]) -> None:
        """Write to each paused socket of these users what its user's history holds after the last
        offset it was written, then its held live events not among them. Lost messages (a
        history trimmed or gone past that offset) are counted (``lost_during_catch_up``), logged."""
        users = set(user_ids)
        due = [(sid, tracked) for sid in self._paused
               if (tracked := self.sockets.get(sid)) is not None and tracked.user_id in users]
        for sid, tracked in due:
            self._paused.discard(sid)
            caught = await self._write_history(sid, tracked, tracked.last_offset, [], "lost_during_catch_up")
            self.metrics.caught_up.inc(caught)
        self._paused &= self.sockets.keys()

    def fills_gap(self, sid: str, offset: str, event: str, args: list[Any]) -> bool:
        """A stored event for ``sid`` came live, and stored ones before it never did (the queue
        missed them: a shard failed over, a slot moved): hold it, and catch the socket up from
        the history, which writes the missing ones first. Whether it was held."""
        tracked = self.sockets.get(sid)
        if tracked is None or not _skips(tracked.last_offset, offset):
            return False
        if tracked.held is None:
            tracked.held = []
            self._paused.add(sid)
        tracked.held.append((offset, event, args))
        task = asyncio.get_running_loop().create_task(self.catch_up([tracked.user_id]), name="recovery-gap")
        self._filling.add(task)
        task.add_done_callback(self._filling.discard)
        return True

    async def _write_history(self, sid: str, tracked: Tracked, after: str, missed: list[tuple[str, bytes]],
                             failure: str) -> int:
        """Write ``missed``, then what the history holds after it (or after ``after``), then the held
        live events that were not among them; how many came from the history. A history that
        fails meanwhile is counted as ``failure`` and logged."""
        written, budget = 0, self.max_replay_bytes
        try:
            for offset, envelope in missed:
                if self.sockets.get(sid) is not tracked:
                    return written
                written += await self._replay_one(sid, tracked, offset, envelope)
                budget, after = budget - len(envelope), offset
            async for page in self.store.history(tracked.user_id, after):
                budget -= sum(len(envelope) for _, envelope in page)
                if budget < 0:
                    raise _TooLarge("the history's tail exceeds what one replay may write")
                for offset, envelope in page:
                    if self.sockets.get(sid) is not tracked:
                        return written
                    written += await self._replay_one(sid, tracked, offset, envelope)
        except (HistoryGone, QueueUnavailableError, _TooLarge) as exc:
            self.metrics.recoveries_failed.labels(reason=failure).inc()
            self._report(failure, logging.WARNING, "a history could not be read to its end; messages may be missing",
                         user_id=tracked.user_id, reason=failure, error=str(exc))
        finally:
            await self._release(sid, tracked)
        return written

    async def _replay_one(self, sid: str, tracked: Tracked, offset: str, envelope: bytes) -> bool:
        """Write one stored message, unless it is forged, foreign or stale; whether it was written.
        Passed, written or not: its live copy, if any, must not be written after newer ones."""
        tracked.replayed.add(offset)
        try:
            message = self._open_envelope(envelope)
        except InvalidEnvelopeError as exc:
            self.metrics.dropped.labels(reason=exc.reason).inc()
            self._report(exc.reason, logging.WARNING, "dropped an invalid message from a history", reason=exc.reason)
            return False
        if message["method"] != "emit" or message.get("room") != user_room(tracked.user_id) \
                or message.get("binary") or message.get("callback"):
            self.metrics.dropped.labels(reason="invalid_envelope").inc()
            self._report("foreign", logging.WARNING, "dropped a message from a history that is not for its user")
            return False
        if isinstance(message.get("ts"), int) and message["ts"] / 1000 < time.time() - self.max_age:
            self.metrics.dropped.labels(reason="stale").inc()
            self._report("stale", logging.WARNING, "dropped a message from a history older than any session")
            return False
        await self._send(sid, message["event"], list(message["data"]), offset)
        return True

    async def _release(self, sid: str, tracked: Tracked) -> None:
        """Stop holding: write the held events that the replay did not."""
        while tracked.held:
            held, tracked.held = tracked.held, []
            for offset, event, args in held:
                if offset not in tracked.replayed:
                    await self._send(sid, event, args, offset)
        tracked.held = None
        if tracked.replayed:
            asyncio.get_running_loop().call_later(REPLAYED_MEMORY_S, tracked.replayed.clear)

    # --- reporting ---------------------------------------------------------

    def _failed(self, reason: str, **fields: Any) -> None:
        self.metrics.recoveries_failed.labels(reason=reason).inc()
        self._report(reason, logging.INFO, "session not recovered; the client starts a new one",
                     reason=reason, **fields)

    def _report(self, key: str, level: int, message: str, **fields: Any) -> None:
        held = self._throttle.allow(key)
        if held is not None:
            logger.log(level, message, extra={**fields, "suppressed": held})
