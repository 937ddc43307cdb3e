"""Recoverable sessions and each user's history of messages, in Redis, for every replica.

A user's sessions are one hash (field = the session's private id, ``pid``) and their
history one list, beside their presence and in its slot (``keys``). The send
functions append a message to the history, in the same step as routing it, while a
session of the user can still recover it; its place in the list is the offset the
client receives with the event (``routing.lua``). A crashed replica writes nothing,
so a session's deadline is written ahead: the presence heartbeat pushes it to
``INSTANCE_TTL_MS`` + the window from now while the socket lives, and a socket that
lost its connection sets it to the window from now (``presence``).

Every session entry is signed (``entries``); a claim believes only a genuine one.
Claims are bounded as every store bounds them (``claims``: a burst, then one per
interval, the entry carrying when the next is free), and a client that missed more
than the history's limit recovers nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from redis.exceptions import RedisError

from ...errors import QueueUnavailableError
from ..base import Claim, HistoryGone, Session, SessionStore
from ..claims import HISTORY_PAGE, next_claim_tat, replay_start, too_frequent
from .anomalies import Anomalies
from .entries import INSTANCE_TTL_MS, SessionEntry, SignedEntries, now_ms
from .keys import history_key, presence_key, sessions_key
from .transport import RedisTransport

__all__ = ["RedisSessions"]

T = TypeVar("T")

# An element of a history that says messages after it went unstored (the history was full).
_UNSTORED = b"!"


class RedisSessions(SessionStore):
    """Sessions and histories through the backend's command client and routing functions.

    :param window: seconds a session outlives its lost connection (``RECOVERY_WINDOW_SECONDS``).
    :param max_messages: most messages a client may have missed and recover (``RECOVERY_MAX_MESSAGES``).
    """

    def __init__(self, transport: RedisTransport, *, channel: str, process: str, window: float,
                 max_messages: int, entries: SignedEntries, anomalies: Anomalies) -> None:
        self._transport = transport
        self._channel = channel
        self._process = process
        self._max_messages = max_messages
        self._entries = entries
        self._anomalies = anomalies
        self.window_ms = int(window * 1000)
        # Without a heartbeat, an open session lasts until its replica is presumed dead, plus the window.
        self.unattended_ms = INSTANCE_TTL_MS + self.window_ms

    @property
    def lifetime(self) -> float:
        return self.unattended_ms / 1000

    async def open(self, user_id: str, sid: str) -> Session:
        generation, last, anomalies = await self._call(
            "open_history", [history_key(self._channel, user_id)], [self._max_messages, self.unattended_ms])
        self._anomalies.report(anomalies, user_id=user_id)
        return Session(secrets.token_urlsafe(16), secrets.token_hex(8), f"{generation.decode()}-{last.decode()}")

    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        """Decide on what the session entry and the history say, then take the session over if
        its entry is still the one read (``taken`` if another connection got there first)."""
        raw, socket, generation, base, limit, length, unstored = await self._call(
            "claim_read", self._keys(user_id), [pid], read_only=True)
        if raw is None:
            return "unknown"
        entry = self._entries.parse_session(user_id, pid, raw)
        if entry is None:
            self._anomalies.report(["forged_session"], user_id=user_id)
            return "unknown"
        now = now_ms()
        if entry.deadline <= now:
            return "expired"
        start = replay_start(entry.start, offset, generation.decode() if generation else None,
                             base=base, length=length, unstored=unstored, limit=limit)
        if start is None:
            return "gone"
        if too_frequent(entry.tat, now):
            return "too_frequent"
        session = Session(pid, secrets.token_hex(8), start, tat=next_claim_tat(entry.tat, now), claimed=True)
        taken = self._entries.session(user_id, pid, SessionEntry(
            now + self.unattended_ms, session.epoch, entry.sid, start, session.tat, self._process))
        if not await self._call("claim_take", self._keys(user_id)[1:], [pid, raw, taken, self.unattended_ms]):
            return "taken"
        vouched = socket is not None and self._entries.genuine_presence(user_id, entry.sid, socket)
        if socket is not None and not vouched:
            self._anomalies.report(["forged_presence"], user_id=user_id)
        return Claim(entry.sid, session, entry.process, vouched)

    async def end(self, user_id: str, session: Session) -> None:
        await self._call("leave", self._keys(user_id), [
            "", self._process, session.pid, session.epoch, "end", "", 0, "", self._entries.skew_ms,
            self._entries.stale_ms])

    async def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        generation, _, last = start.partition("-")
        after = int(last)
        while True:
            reply = await self._call("read_history", [history_key(self._channel, user_id)],
                                     [generation, after, HISTORY_PAGE], read_only=True)
            if reply[0] != b"ok":
                raise HistoryGone(f"the history no longer holds what follows {start}")
            first, elements = int(reply[1]), reply[2:]
            if _UNSTORED in elements:
                raise HistoryGone("messages after the history filled up were not stored")
            if elements:
                yield [(f"{generation}-{first + index}", element) for index, element in enumerate(elements)]
            if len(elements) < HISTORY_PAGE:
                return
            after = first + len(elements) - 1

    async def _call(self, name: str, keys: list[str], args: list[Any], *, read_only: bool = False) -> Any:
        functions = await self._transport.functions()
        return await _reading(functions.call(name, keys, args, read_only=read_only))

    def _keys(self, user_id: str) -> list[str]:
        return [presence_key(self._channel, user_id), sessions_key(self._channel, user_id),
                history_key(self._channel, user_id)]


async def _reading(command: Awaitable[T]) -> T:
    try:
        return await command
    except (RedisError, OSError) as exc:
        raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc
