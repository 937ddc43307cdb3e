"""Recoverable sessions and each user's history of messages, in Redis, for every replica.

A user's sessions are one hash (field = the session's private id, ``pid``) and their
history one stream, beside their presence and in its slot (``keys``). The send
scripts append a message to the history, in the same step as routing it, while a
session of the user can still recover it; the entry id is the offset the client
receives with the event (``scripts.SEND_TO_USER``). A crashed replica writes nothing,
so a session's deadline is written ahead: the presence heartbeat pushes it to
``INSTANCE_TTL_MS`` + the window from now while the socket lives (``RECORD``), and a
socket that lost its connection sets it to the window from now (``LEAVE``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable
from typing import NamedTuple, TypeVar

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from ...errors import QueueUnavailableError
from ..base import Claim, HistoryGone, Session, SessionStore
from .entries import INSTANCE_TTL_MS
from .keys import history_key, sessions_key
from .scripts import CLAIM_SESSION, OPEN_SESSION
from .transport import RedisTransport

__all__ = ["HISTORY_PAGE", "RedisSessions"]

T = TypeVar("T")

# Entries read per round trip while replaying a history.
HISTORY_PAGE = 100
class RedisSessions(SessionStore):
    """Sessions and histories through the backend's command client.

    :param window: seconds a session outlives its lost connection (``RECOVERY_WINDOW_SECONDS``).
    :param max_messages: most messages kept per user (``RECOVERY_MAX_MESSAGES``).
    """

    def __init__(self, transport: RedisTransport, *, channel: str, process: str, window: float,
                 max_messages: int) -> None:
        self._transport = transport
        self._channel = channel
        self._process = process
        self._max_messages = max_messages
        self.window_ms = int(window * 1000)
        # Without a heartbeat, an open session lasts until its replica is presumed dead, plus the window.
        self.unattended_ms = INSTANCE_TTL_MS + self.window_ms
        self._loaded: _Scripts | None = None

    @property
    def lifetime(self) -> float:
        return self.unattended_ms / 1000

    async def open(self, user_id: str, sid: str) -> Session:
        pid, epoch = secrets.token_urlsafe(16), secrets.token_hex(8)
        base = await _reading((await self._scripts()).open(keys=self._keys(user_id), args=[
            pid, epoch, sid, self._process, self._max_messages, self.unattended_ms]))
        return Session(pid, epoch, base.decode())

    async def claim(self, user_id: str, pid: str, offset: str | None) -> Claim | str:
        epoch = secrets.token_hex(8)
        # The client's offset is checked (``recovery.is_offset``): the script compares ids as text.
        reply = await _reading((await self._scripts()).claim(keys=self._keys(user_id), args=[
            pid, offset or "", epoch, self._process, self.unattended_ms]))
        if reply[0] != b"ok":
            return str(reply[0].decode())
        _, sid, start, previous = (part.decode() for part in reply)
        return Claim(sid, Session(pid, epoch, start), previous)

    async def history(self, user_id: str, start: str) -> AsyncIterator[list[tuple[str, bytes]]]:
        key = history_key(self._channel, user_id)
        entries = await self._entries(key, start)
        if not entries or entries[0][0].decode() != start:
            raise HistoryGone(f"the history no longer holds {start}")
        page = entries[1:]
        while True:
            stored = [(entry_id.decode(), fields[b"m"]) for entry_id, fields in page if b"m" in fields]
            if stored:
                yield stored
            if len(entries) < HISTORY_PAGE:
                return
            entries = page = await self._entries(key, "(" + entries[-1][0].decode())

    async def _entries(self, key: str, low: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """A page of a history from ``low`` (``(`` before an id: after it), start markers included."""
        client = await self._transport.redis()
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await _reading(
            client.xrange(key, min=low, max="+", count=HISTORY_PAGE))  # type: ignore[arg-type]
        return entries

    async def _scripts(self) -> _Scripts:
        if self._loaded is None:  # the client exists once Redis was first reached
            client = await self._transport.redis()
            self._loaded = _Scripts(client.register_script(OPEN_SESSION), client.register_script(CLAIM_SESSION))
        return self._loaded

    def _keys(self, user_id: str) -> list[str]:
        return [sessions_key(self._channel, user_id), history_key(self._channel, user_id)]


class _Scripts(NamedTuple):
    open: AsyncScript
    claim: AsyncScript


async def _reading(command: Awaitable[T]) -> T:
    try:
        return await command
    except (RedisError, OSError) as exc:
        raise QueueUnavailableError(f"Redis unreachable: {exc}") from exc
