"""The values of presence and session entries, and which of them a replica or sender may believe.

Anyone who can write to Redis can write an entry; only the replicas and emitters of a
channel hold its ``QUEUE_SIGNING_KEY``. So every entry that makes a replica act -- a
user counted online, a message answered "stored", a session recovered, a socket
kicked -- carries an HMAC over the channel, the user and everything it says, and is
believed only when it verifies. Without a key (``ALLOW_UNSIGNED_QUEUE``) entries are
written and believed as they are.

- A **presence** entry is ``<process>#<ms>#<HMAC>``: it counts only while no older than
  ``INSTANCE_TTL_MS`` plus the clock skew, so a replayed copy of a real entry keeps a
  user who left "online" that long at most.
- A **session** entry is ``<deadline>|<epoch>|<sid>|<start>|<tat>|<process>|<HMAC>``: the
  deadline (this host's clock, ms) bounds a replayed copy the same way, and the epoch
  changes with every connection that takes the session over.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ...messages.replay import DEFAULT_WINDOW

__all__ = ["INSTANCE_TTL_MS", "SessionEntry", "SignedEntries", "now_ms"]

# How long a replica's heartbeat vouches for it (and for its signed entries).
INSTANCE_TTL_MS = 10_000


def now_ms() -> int:
    """This host's clock, in ms: the clock of signed entries."""
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """What a session entry says: until when it can be recovered (``deadline``, ms), which
    connection holds it (``epoch``), its socket id, the offset its replay starts after, when a
    claim of it is next free of delay (``tat``, ms: see ``sessions``), the process that wrote it."""

    deadline: int
    epoch: str
    sid: str
    start: str
    tat: int
    process: str


class SignedEntries:
    """Writes and checks the entries of one channel, signed when there is a key.

    :param clock_skew: how far (seconds) other hosts' clocks may be off this one's.
    """

    def __init__(self, channel: str, signing_key: bytes | None, clock_skew: float = DEFAULT_WINDOW) -> None:
        self._channel = channel
        self._key = signing_key
        self.skew_ms = int(clock_skew * 1000)
        # How long after it was signed a presence entry may still be a live socket's.
        self.stale_ms = INSTANCE_TTL_MS + self.skew_ms

    # --- presence ----------------------------------------------------------

    def presence(self, user_id: str, sid: str, process: str) -> str:
        """The entry recording that ``process`` holds socket ``sid`` of ``user_id``, now."""
        if self._key is None:
            return process
        ts_ms = now_ms()
        mac = self._mac(f"{user_id}\n{sid}\n{process}\n{ts_ms}")
        return f"{process}#{ts_ms}#{mac}"

    def any_genuine(self, user_id: str, entries: Sequence[bytes]) -> bool:
        """Whether ``entries`` (sid, value, sid, value, ... as the functions return them) hold one
        this channel's replicas wrote."""
        if self._key is None:
            return bool(entries)
        pairs = zip(entries[::2], entries[1::2], strict=True)
        return any(self.genuine_presence(user_id, sid.decode("utf-8", "replace"), value) for sid, value in pairs)

    def genuine_presence(self, user_id: str, sid: str, value: bytes) -> bool:
        """An entry for socket ``sid`` of ``user_id`` this key signed, recently enough to be a live
        heartbeat's (any entry, without a key)."""
        if self._key is None:
            return True
        # From the right, as the functions do: the process id (INSTANCE_ID) may hold a '#'.
        parts = value.decode("utf-8", "replace").rsplit("#", 2)
        if len(parts) != 3 or not _is_number(parts[1]):
            return False
        process, ts_text, mac = parts
        if not -self.skew_ms <= now_ms() - int(ts_text) <= self.stale_ms:
            return False
        return _same(mac, self._mac(f"{user_id}\n{sid}\n{process}\n{ts_text}"))

    # --- sessions ----------------------------------------------------------

    def session(self, user_id: str, pid: str, entry: SessionEntry) -> str:
        """The stored value of session ``pid`` of ``user_id``."""
        body = f"{entry.deadline}|{entry.epoch}|{entry.sid}|{entry.start}|{entry.tat}|{entry.process}"
        mac = "" if self._key is None else self._mac(f"session\n{user_id}\n{pid}\n{body}")
        return f"{body}|{mac}"

    def parse_session(self, user_id: str, pid: str, value: bytes) -> SessionEntry | None:
        """The session ``value`` describes, if this key signed it for ``pid`` of ``user_id``;
        ``None`` for a forged or malformed value."""
        text = value.decode("utf-8", "replace")
        body, _, mac = text.rpartition("|")
        fields = body.split("|", 5)
        if len(fields) != 6 or not _is_number(fields[0]) or not _is_number(fields[4]):
            return None
        if self._key is not None and not _same(mac, self._mac(f"session\n{user_id}\n{pid}\n{body}")):
            return None
        deadline, epoch, sid, start, tat, process = fields
        return SessionEntry(int(deadline), epoch, sid, start, int(tat), process)

    def any_recoverable(self, user_id: str, entries: Sequence[bytes]) -> bool:
        """Whether session entries (pid, value, pid, value, ... as the send functions return them)
        hold one this key signed whose deadline has not passed: a stored message can be recovered."""
        now = now_ms()
        pairs = zip(entries[::2], entries[1::2], strict=True)
        return any((entry := self.parse_session(user_id, pid.decode("utf-8", "replace"), value)) is not None
                   and entry.deadline > now - self.skew_ms for pid, value in pairs)

    def _mac(self, text: str) -> str:
        assert self._key is not None
        return hmac.digest(self._key, f"{self._channel}\n{text}".encode(), "sha256").hex()[:32]


def _is_number(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` takes ``²`` too, which ``int`` refuses), and not absurdly many."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _same(given: str, expected: str) -> bool:
    """Compare a MAC read from Redis (any text: ``compare_digest`` refuses non-ASCII ``str``)."""
    return hmac.compare_digest(given.encode(), expected.encode())
