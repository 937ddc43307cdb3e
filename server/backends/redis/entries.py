"""The value of a presence entry, and which entries a sender may believe.

Unsigned, an entry is the replica process that holds the socket. With a signing
key it is ``<process>#<ms>#<HMAC>``: the HMAC covers the channel, user, sid,
process and time, and only entries with a valid HMAC no older than
``INSTANCE_TTL_MS`` plus the clock skew count. A neighbour who can write to
Redis cannot make an unknown user look connected; replaying a real entry keeps
a user who left "online" for that long at most.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence

from ...queue.replay import DEFAULT_WINDOW

__all__ = ["INSTANCE_TTL_MS", "PresenceEntries"]

# How long a replica's heartbeat vouches for it (and for its signed entries).
INSTANCE_TTL_MS = 10_000


class PresenceEntries:
    """Writes and checks the entries of one channel, signed when there is a key."""

    def __init__(self, channel: str, signing_key: bytes | None, clock_skew: float = DEFAULT_WINDOW) -> None:
        self._channel = channel
        self._key = signing_key
        self._skew_ms = int(clock_skew * 1000)

    def value(self, user_id: str, sid: str, process: str) -> str:
        """The entry recording that ``process`` holds socket ``sid`` of ``user_id``, now."""
        if self._key is None:
            return process
        now_ms = int(time.time() * 1000)
        return f"{process}#{now_ms}#{self._mac(self._key, user_id, sid, process, now_ms)}"

    def any_genuine(self, user_id: str, entries: Sequence[bytes]) -> bool:
        """Whether ``entries`` (sid, value, sid, value, ... of live replicas, as the scripts
        return them) hold one this channel's replicas wrote."""
        if self._key is None:
            return bool(entries)
        now_ms = int(time.time() * 1000)
        pairs = zip(entries[::2], entries[1::2], strict=True)
        return any(self._genuine(self._key, user_id, sid, value, now_ms) for sid, value in pairs)

    def _mac(self, key: bytes, user_id: str, sid: str, process: str, ts_ms: int) -> str:
        text = f"{self._channel}\n{user_id}\n{sid}\n{process}\n{ts_ms}".encode()
        return hmac.digest(key, text, "sha256").hex()[:32]

    def _genuine(self, key: bytes, user_id: str, sid: bytes, value: bytes, now_ms: int) -> bool:
        """An entry this key signed, recently enough to be a live heartbeat's."""
        # From the right, as the Lua scripts do: the process id (INSTANCE_ID) may hold a '#'.
        parts = value.decode("utf-8", "replace").rsplit("#", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return False
        process, ts_text, mac = parts
        ts_ms = int(ts_text)
        if not -self._skew_ms <= now_ms - ts_ms <= INSTANCE_TTL_MS + self._skew_ms:
            return False
        expected = self._mac(key, user_id, sid.decode("utf-8", "replace"), process, ts_ms)
        return hmac.compare_digest(mac, expected)
