"""Many deadlines under one event-loop timer: the Engine.IO sockets' ping clocks, and
the sockets' token expiries.

Every socket is pinged every ``ping_interval`` and closed when a ping goes unanswered for
``ping_timeout``. python-engineio waits for both with a task per socket (a sleeping task for
the next ping, and the WebSocket read wrapped in ``wait_for``, a task, a future and a timer,
for the answer); a ``loop.call_later`` per socket would still cost half a kilobyte of handle,
libuv timer, bound method and context for every idle connection. Here a socket's deadline is
an entry in one heap, and a single ``loop.call_at`` waits for the earliest.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A loop timer may fire this early (libuv counts milliseconds): what is due by then is due now.
_EARLY = 0.001


class Deadlines(Generic[T]):
    """Calls ``callback(item, when)`` once ``loop.time()`` reaches each ``when`` added.

    Entries are not cancelled: the callback tells whether the item still waits for that
    ``when`` (a stale entry costs a heap slot until its time, then nothing).
    """

    __slots__ = ("_armed_at", "_callback", "_handle", "_heap", "_order")

    def __init__(self, callback: Callable[[T, float], None]) -> None:
        self._callback = callback
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # ties go first in, first out; items need not compare
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, delay: float, item: T) -> float:
        """Call back for ``item`` ``delay`` seconds from now; returns that ``when``."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        heapq.heappush(self._heap, (when, next(self._order), item))
        if self._handle is None or when < self._armed_at:
            self._arm(loop)
        return when

    def prune(self, live: Callable[[T, float], bool]) -> None:
        """Drop the entries whose callback would ignore them (``live`` says which are not),
        for a user whose deadlines are far off and often abandoned (token expiries)."""
        self._heap = [entry for entry in self._heap if live(entry[2], entry[0])]
        heapq.heapify(self._heap)

    def close(self) -> None:
        """Forget every deadline (the loop is stopping)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = self._heap[0][0]
        self._handle = loop.call_at(self._armed_at, self._fire)

    def _fire(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        heap = self._heap
        now = loop.time() + _EARLY
        while heap and heap[0][0] <= now:
            when, _, item = heapq.heappop(heap)
            try:
                self._callback(item, when)
            except Exception:
                logger.exception("deadline callback failed")
        if heap:
            self._arm(loop)
