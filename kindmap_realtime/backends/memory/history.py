"""One user's history of stored messages, in memory, numbered as the Redis one is.

Its offsets are ``<generation>-<sequence>``: a history opened anew (after the last one
expired) has a new generation, so an offset of the old one never matches. It keeps only
what a replay could still use, so it is trimmed as each message is appended or read: at
most ``max_messages`` (``RECOVERY_MAX_MESSAGES``), ``max_bytes`` (``RECOVERY_MAX_REPLAY_BYTES``:
a replay writes no more; 0: no bound but the others) and nothing older than ``max_age`` (a
replay drops older ones as stale). A client that missed what was trimmed recovers nothing (``base`` moved past it).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["History", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """What a history keeps: messages, bytes (0: no bound but the others), seconds."""

    max_messages: int
    max_bytes: int
    max_age: float

    def widest(self, other: Limits) -> Limits:
        """What keeps enough for replicas with either limits (replicas may differ in them)."""
        max_bytes = 0 if 0 in (self.max_bytes, other.max_bytes) else max(self.max_bytes, other.max_bytes)
        return Limits(max(self.max_messages, other.max_messages), max_bytes, max(self.max_age, other.max_age))


class History:
    """Messages ``base + 1`` to ``last``, each with when it was stored.

    :param generation: tells this history from every earlier one of the user's.
    """

    def __init__(self, generation: str, limits: Limits) -> None:
        self.generation = generation
        self.base = 0  # the sequence number before the first message kept
        self.limits = limits
        self._messages: deque[tuple[bytes, float]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def last(self) -> int:
        """The sequence number of the newest message (``base`` when none is kept)."""
        return self.base + len(self._messages)

    @property
    def oldest(self) -> float | None:
        """When the oldest message kept was stored."""
        return self._messages[0][1] if self._messages else None

    def offset(self, sequence: int) -> str:
        return f"{self.generation}-{sequence}"

    def append(self, envelope: bytes, now: float) -> str | None:
        """Store one message; its offset, or ``None`` for one larger than ``max_bytes`` alone, which
        no replay could write (stored, it would be trimmed at once: "stored" would be untrue)."""
        if 0 < self.limits.max_bytes < len(envelope):
            return None
        self._messages.append((envelope, now))
        self._bytes += len(envelope)
        self.trim(now)
        return self.offset(self.base + len(self._messages))

    def trim(self, now: float) -> None:
        """Drop the oldest messages past any of the limits."""
        messages, limits = self._messages, self.limits
        while messages and (len(messages) > limits.max_messages or 0 < limits.max_bytes < self._bytes
                            or messages[0][1] + limits.max_age <= now):
            envelope, _ = messages.popleft()
            self._bytes -= len(envelope)
            self.base += 1

    def read(self, after: int, count: int) -> list[tuple[str, bytes]] | None:
        """Up to ``count`` messages after sequence number ``after``, with their offsets; ``None``
        when the history no longer holds what follows it."""
        if after < self.base:
            return None
        first = after - self.base
        return [(self.offset(self.base + index + 1), self._messages[index][0])
                for index in range(first, min(first + count, len(self._messages)))]
