"""Presence on a ``MemoryBroker``: which replica holds each socket, and the sessions kept alive with them.

The Redis presence's rules, without what only many processes need: a replica here is
alive as long as this process is, so nothing is written again by a heartbeat, and a
session held by a connected socket needs no deadline until its connection is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ...errors import SessionTakenError, TooManyConnectionsError
from ..base import Presence, Session
from .broker import Member, MemoryBroker, SessionEntry

__all__ = ["SWEEP_INTERVAL", "MemoryPresence"]

logger = logging.getLogger(__name__)

# How often the upkeep expires what fell due while nothing was written.
SWEEP_INTERVAL = 1.0


class MemoryPresence(Presence):
    """A replica's sockets in the broker's users.

    :param recovery_window: seconds a lost connection's session is kept (``RECOVERY_WINDOW_SECONDS``).
    :param max_sockets: most live sockets of one user on all the broker's replicas (0: no cap).
    :param max_sessions: most recoverable sessions of one user; a new one drops the oldest.
    """

    def __init__(self, broker: MemoryBroker, member: Member, *, channel: str, recovery_window: float = 0.0,
                 max_sockets: int = 0, max_sessions: int = 0) -> None:
        self._broker = broker
        self._member = member
        self._channel = channel
        self._window = recovery_window
        self._max_sockets = max_sockets
        self._max_sessions = max_sessions
        self._local: dict[str, tuple[str, Session | None]] = {}  # sid -> its user and session, on this replica
        self._on_taken: Callable[[str], Awaitable[None]] | None = None
        self._upkeep: asyncio.Task[None] | None = None
        member.on_taken = self._taken

    def on_taken(self, callback: Callable[[str], Awaitable[None]]) -> None:
        self._on_taken = callback

    async def add(self, user_id: str, sid: str, session: Session | None = None) -> None:
        """Record a socket unless the user is at ``max_sockets`` or its claimed session was taken
        over meanwhile; a replica that held this socket id before (the session was recovered
        here from there) disconnects its socket."""
        known = self._broker.user(self._channel, user_id)
        if self._max_sockets and known is not None and \
                sum(1 for other in known.sockets if other != sid) >= self._max_sockets:
            raise TooManyConnectionsError(f"this user already holds {self._max_sockets} connections "
                                          "(MAX_SOCKETS_PER_USER); close one first")
        if session is not None and session.claimed and (
                known is None or (held := known.sessions.get(session.pid)) is None or held.epoch != session.epoch):
            raise SessionTakenError("another connection recovered this session meanwhile; connect again")
        user = self._broker.writing(self._channel, user_id)
        if session is not None:
            if not session.claimed:
                user.prune_sessions(self._broker.now(), self._broker.expired_kept, cap=self._max_sessions,
                                    keep=session.pid)
            user.sessions[session.pid] = SessionEntry(session.epoch, sid, session.start, session.tat, self._member)
        previous = user.sockets.get(sid)
        user.sockets[sid] = self._member
        self._local[sid] = (user_id, session)
        self._broker.settle(self._channel, user_id)
        if previous is not None and previous is not self._member and previous.on_taken is not None:
            await previous.on_taken(sid)

    async def remove(self, user_id: str, sid: str, session: Session | None = None, *, keep: bool = False) -> None:
        """Withdraw a socket (unless another replica holds its socket id now), and end its session
        or keep it for the window (unless another connection took it over)."""
        self._local.pop(sid, None)
        user = self._broker.user(self._channel, user_id)
        if user is None:
            return
        if user.sockets.get(sid) is self._member:
            del user.sockets[sid]
        entry = user.sessions.get(session.pid) if session is not None else None
        if session is not None and entry is not None and entry.epoch == session.epoch:
            if keep:
                now = self._broker.now()
                entry.sid, entry.start, entry.deadline = sid, session.start, now + self._window
                user.keep_history(now + self._window)
            else:
                del user.sessions[session.pid]
        self._broker.settle(self._channel, user_id)

    async def is_online(self, user_id: str) -> bool:
        user = self._broker.user(self._channel, user_id)
        return user is not None and bool(user.sockets)

    async def start(self) -> None:
        self._upkeep = asyncio.create_task(self._sweep_forever(), name="memory-presence-upkeep")

    async def close(self) -> None:
        """Stop the upkeep; the sockets still here lost their connection with this replica:
        withdrawn, their sessions kept."""
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
            self._upkeep = None
        for sid, (user_id, session) in list(self._local.items()):
            await self.remove(user_id, sid, session, keep=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._broker.sweep()

    async def _taken(self, sid: str) -> None:
        """A connection on another replica recovered this socket's session, socket id and all."""
        self._local.pop(sid, None)
        logger.info("presence: a socket's session was recovered elsewhere; disconnecting it here", extra={"sid": sid})
        if self._on_taken is not None:
            await self._on_taken(sid)
