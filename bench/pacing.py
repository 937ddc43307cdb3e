"""Open-loop pacing: when each message of a step is due.

Message ``i`` of a step offered at ``rate`` msg/s is due at ``start + i / rate``,
whatever happened to the messages before it, so a slow server cannot slow the
offered load down (closed-loop senders hide saturation). A sender that falls
behind sends at once what is overdue; it sends nothing after the step's end, so
the rate it achieved is honest and can be compared with the rate offered.
"""

from __future__ import annotations

import math

__all__ = ["Schedule"]


class Schedule:
    """Hands out due times, one per message, to any number of concurrent senders.

    :param rate: offered messages per second; ``math.inf`` for as fast as possible.
    :param duration: length of the step, in seconds.
    :param start: the step's start on the caller's clock.
    """

    def __init__(self, rate: float, duration: float, start: float) -> None:
        if rate <= 0 or duration <= 0:
            raise ValueError("rate and duration must be positive")
        self.rate = rate
        self.duration = duration
        self.start = start
        self.end = start + duration
        self.issued = 0

    def take(self, now: float) -> float | None:
        """The due time of the next message, or ``None`` once the step is over.

        The step is over when the next message would be due at or after its end,
        or when ``now`` has passed the end (a sender that fell behind stops there).
        """
        due = self._next_due()
        if due >= self.end or now >= self.end:
            return None
        self.issued += 1
        return due

    def take_overdue(self, now: float, limit: int) -> int:
        """Take up to ``limit`` more messages already due at ``now``, as ``take`` would hand
        them out (a sender that fell behind sends them in one batch); returns how many. Their
        sequence numbers are the last ones issued."""
        taken = 0
        while taken < limit and (due := self._next_due()) <= now and due < self.end and now < self.end:
            self.issued += 1
            taken += 1
        return taken

    def _next_due(self) -> float:
        return self.start if math.isinf(self.rate) else self.start + self.issued / self.rate
