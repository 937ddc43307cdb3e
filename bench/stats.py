"""The numbers a step reports: latency percentiles and losses.

Kept free of I/O so the arithmetic is unit-tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Latency", "Losses", "count_losses", "percentile", "summarize_latency"]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, interpolated
    linearly between the two nearest ranks (numpy's default method)."""
    if not ordered:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0-100, got {q}")
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Latency:
    """Emit-to-receive latency of one step, in milliseconds (``None`` when nothing arrived)."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


def summarize_latency(seconds: Sequence[float]) -> Latency:
    if not seconds:
        return Latency(count=0, p50_ms=None, p99_ms=None, max_ms=None)
    ordered = sorted(seconds)
    return Latency(count=len(ordered), p50_ms=percentile(ordered, 50) * 1000,
                   p99_ms=percentile(ordered, 99) * 1000, max_ms=ordered[-1] * 1000)


@dataclass(frozen=True)
class Losses:
    """Expected against received, client by client.

    ``lost`` adds up each client's shortfall and ``extra`` each client's surplus
    (a duplicate, or a message it was not sent), so one client's surplus never
    hides another's loss.
    """

    expected: int
    received: int
    lost: int
    extra: int

    @property
    def delivered_fraction(self) -> float:
        return (self.received - self.extra) / self.expected if self.expected else 1.0


def count_losses(expected: Mapping[str, int], received: Mapping[str, int]) -> Losses:
    clients = expected.keys() | received.keys()
    lost = sum(max(0, expected.get(c, 0) - received.get(c, 0)) for c in clients)
    extra = sum(max(0, received.get(c, 0) - expected.get(c, 0)) for c in clients)
    return Losses(expected=sum(expected.values()), received=sum(received.values()), lost=lost, extra=extra)
