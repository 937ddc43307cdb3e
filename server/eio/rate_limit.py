"""Token buckets: how many packets a socket, or handshakes an address, may send.

One socket flooding ``ping`` or retrying its handshake in a loop must not take the
CPU that other clients' messages need. A bucket lets short bursts through and then
a steady rate; past it a packet is dropped, and the sender hears so at most once a
second (an answer per dropped packet would itself be the flood). A socket that stays
over its limit for several seconds in a row is closed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

__all__ = ["FloodGuard", "KeyedBuckets", "TokenBucket", "Verdict"]

Clock = Callable[[], float]

# Seconds between two RATE_LIMITED answers to one socket, and the length of a strike.
NOTICE_INTERVAL = 1.0


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each packet takes one."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")  # one per session: no __dict__

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Take a token if there is one; ``False`` means over the limit."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def full(self) -> bool:
        self._refill()
        return self._tokens >= self.burst

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


class Verdict(Enum):
    """What to do with one packet of a socket."""

    PASS = "pass"  # handle it
    DROP = "drop"  # drop it silently: the sender was told less than a second ago
    NOTIFY = "notify"  # drop it and answer RATE_LIMITED
    CLOSE = "close"  # answer RATE_LIMITED and close the socket: over the limit for too long


class FloodGuard(TokenBucket):
    """One socket's bucket, plus how long it has been over the limit.

    Every second (``NOTICE_INTERVAL``) in which packets are dropped is a strike;
    strikes in consecutive seconds add up, a quiet second starts over. At ``strikes``
    the socket is closed, so a client that slows down when told keeps its connection.

    A bucket itself, not one holding a bucket: one object less for every connection.
    """

    __slots__ = ("_max_strikes", "_noticed_at", "_strikes")  # one per session

    def __init__(self, rate: float, burst: int, strikes: int, *, clock: Clock = time.monotonic) -> None:
        super().__init__(rate, burst, clock=clock)
        self._max_strikes = strikes
        self._strikes = 0
        self._noticed_at: float | None = None

    def check(self) -> Verdict:
        if self.take():
            return Verdict.PASS
        now = self._clock()
        last = self._noticed_at
        if last is not None and now - last < NOTICE_INTERVAL:
            return Verdict.DROP
        self._strikes = self._strikes + 1 if last is not None and now - last < 2 * NOTICE_INTERVAL else 1
        self._noticed_at = now
        return Verdict.CLOSE if self._strikes >= self._max_strikes else Verdict.NOTIFY


class KeyedBuckets:
    """A bucket per key (a client address), at most ``max_keys`` of them.

    When full, buckets that have refilled completely are forgotten (their owners
    are within the limit anyway); if all are in use the oldest go, so memory stays
    bounded even when an attacker cycles through addresses.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._forget()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, clock=self._clock)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget(self) -> None:
        kept = [(key, bucket) for key, bucket in self._buckets.items() if not bucket.full]
        if len(kept) >= self.max_keys:
            kept = kept[len(kept) - self.max_keys // 2:]
        self._buckets = dict(kept)
