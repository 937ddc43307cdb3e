"""Recoverable sessions and histories on a ``MemoryBroker``: the Redis store's answers, in one process.

A claim is one step (no other coroutine runs between reading a session and taking it
over), so two connections claiming one session at once cannot both hold it: the
later claim takes it over, and the earlier connection's ``Presence.add`` finds it
taken. A session is recovered, or refused, for the same reasons and within the same
bounds as on Redis (``claims``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from ..base import Claim, HistoryGone, Session, SessionStore
from ..claims import HISTORY_PAGE, next_claim_tat, replay_start, too_frequent
from .broker import Member, MemoryBroker
from .history import History, Limits

__all__ = ["MemorySessions"]


class MemorySessions(SessionStore):
    """A replica's sessions in the broker's users.

    :param window: seconds a session outlives its lost connection (``RECOVERY_WINDOW_SECONDS``).
    :param max_messages: most messages a client may have missed and recover (``RECOVERY_MAX_MESSAGES``).
    :param max_bytes: most bytes of them (``RECOVERY_MAX_REPLAY_BYTES``).
    :param clock_skew: seconds a stored message outlives the window, as a replay accepts it.
    """

    def __init__(self, broker: MemoryBroker, member: Member, *, channel: str, window: float, max_messages: int,
                 max_bytes: int, clock_skew: float) -> None:
        self._broker = broker
        self._member = member
        self._channel = channel
        self._window = window
        self._limits = Limits(max_messages, max_bytes, window + clock_skew)

    @property
    def lifetime(self) -> float:
        """The window: this process holds every connected socket's session, so none outlives it unattended."""
        return self._window

    async def open(self, user_id: str, sid: str) -> Session:
        user = self._broker.writing(self._channel, user_id)
        if user.history is None:
            user.history = History(self._broker.new_generation(), self._limits)
        else:
            user.history.limits = user.history.limits.widest(self._limits)
        user.keep_history(self._broker.now() + self._window)
        start = user.history.offset(user.history.last)
        self._broker.settle(self._channel, user_id)
        return Session(secrets.token_urlsafe(16), secrets.token_hex(8), start)

    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        user = self._broker.user(self._channel, user_id)
        entry = user.sessions.get(pid) if user is not None else None
        if user is None or entry is None:
            return "unknown"
        now, now_ms = self._broker.now(), self._broker.now_ms()
        if not entry.live(now):
            return "expired"
        history = user.history
        if history is None:
            return "gone"
        history.trim(now)
        start = replay_start(entry.start, offset, history.generation, base=history.base, length=len(history) + 1,
                             unstored=-1, limit=history.limits.max_messages)
        if start is None:
            return "gone"
        if too_frequent(entry.tat, now_ms):
            return "too_frequent"
        session = Session(pid, secrets.token_hex(8), start, tat=next_claim_tat(entry.tat, now_ms), claimed=True)
        claim = Claim(entry.sid, session, entry.holder.name, vouched=entry.sid in user.sockets)
        # Until its socket joins (``Presence.add``), an unused claim keeps the session for the window.
        entry.epoch, entry.start, entry.tat, entry.holder = session.epoch, start, session.tat, self._member
        entry.deadline = now + self._window
        user.keep_history(now + self._window)
        self._broker.settle(self._channel, user_id)
        return claim

    async def end(self, user_id: str, session: Session) -> None:
        user = self._broker.user(self._channel, user_id)
        entry = user.sessions.get(session.pid) if user is not None else None
        if user is not None and entry is not None and entry.epoch == session.epoch:
            del user.sessions[session.pid]
            self._broker.settle(self._channel, user_id)

    async def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        generation, _, last = start.partition("-")
        after = int(last)
        while True:
            user = self._broker.user(self._channel, user_id)
            history = user.history if user is not None else None
            page = None
            if history is not None and history.generation == generation:
                history.trim(self._broker.now())
                page = history.read(after, HISTORY_PAGE)
            if page is None:
                raise HistoryGone(f"the history no longer holds what follows {start}")
            if page:
                yield page
            if len(page) < HISTORY_PAGE:
                return
            after += len(page)
