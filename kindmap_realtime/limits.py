"""What every replica and emitter on a channel must agree on, and how a bound is checked.

The replicas' settings (``server.config``) and the emitter's arguments (``kindmap_realtime.emitter``,
``kindmap_realtime.cli``) are checked by the same ``Range``, so both refuse a value with the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError

__all__ = ["DEFAULT_CHANNEL", "DEFAULT_MAX_QUEUE_MESSAGE_BYTES", "MAX_QUEUE_MESSAGE_BYTES", "MIN_QUEUE_MESSAGE_BYTES",
           "QUEUE_MESSAGE_BYTES", "QUEUE_REPLAY_WINDOW", "Range", "check_queue_message_bytes",
           "check_queue_replay_window", "check_signing_key", "number_text"]

DEFAULT_CHANNEL = "kindmap_events"
# The largest queue message. Redis cuts a subscriber whose output buffer passes
# `client-output-buffer-limit pubsub` (docker-compose.prod.yml: 32 MB at once, or 8 MB
# for 60 s), and every message in flight to a replica shares that buffer: one message of
# 40 MB, or 9 of 1 MB held for a minute, make Redis drop every replica's subscription.
# 1 MiB leaves room for a burst of several such messages under the 8 MB soft limit.
DEFAULT_MAX_QUEUE_MESSAGE_BYTES = 1024 * 1024
MIN_QUEUE_MESSAGE_BYTES = 1024
MIN_SIGNING_KEY_BYTES = 32
MAX_QUEUE_MESSAGE_BYTES = 512 * 1024 * 1024  # Redis's proto-max-bulk-len: no larger PUBLISH exists


def number_text(value: float) -> str:
    """A bound or value as people write it: 1000000, 0.1, nan."""
    return str(value) if isinstance(value, int) else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``low`` (exclusive if ``low_open``) to ``high``; never NaN or infinite."""

    low: float
    high: float = math.inf
    low_open: bool = False

    def __str__(self) -> str:
        if self.high < math.inf:
            return f"{number_text(self.low)}–{number_text(self.high)}"
        return f"{'more than' if self.low_open else 'at least'} {number_text(self.low)}"

    def check(self, name: str, value: float) -> None:
        above = self.low < value if self.low_open else self.low <= value
        if not (above and value <= self.high and math.isfinite(value)):  # NaN fails every comparison
            bounds = (f"between {number_text(self.low)} and {number_text(self.high)}" if self.high < math.inf
                      else f"finite and {self}" if math.isinf(value) else str(self))
            raise ConfigError(f"{name} must be {bounds}, got {number_text(value)}")


QUEUE_MESSAGE_BYTES = Range(MIN_QUEUE_MESSAGE_BYTES, MAX_QUEUE_MESSAGE_BYTES)
QUEUE_REPLAY_WINDOW = Range(1.0, 300.0)


def check_queue_message_bytes(name: str, value: int) -> None:
    """The queue message limit, shared by the replicas, the emitter and its CLI."""
    QUEUE_MESSAGE_BYTES.check(name, value)


def check_signing_key(name: str, key: str) -> None:
    """The queue signing key, as replicas and emitters take it: an HMAC-SHA256 key at least as long
    as the hash (RFC 2104), and not blank (a blank key signs, but anyone can guess it)."""
    if not key.strip():
        raise ConfigError(f"{name} must not be blank")
    if len(key.encode()) < MIN_SIGNING_KEY_BYTES:
        raise ConfigError(f"{name} must be at least {MIN_SIGNING_KEY_BYTES} bytes long")


def check_queue_replay_window(name: str, value: float) -> None:
    """The replay window (and clock skew), shared by the replicas, the emitter and its CLI."""
    QUEUE_REPLAY_WINDOW.check(name, value)
