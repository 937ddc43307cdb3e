"""One log line per cause per second, however often the cause recurs."""

from __future__ import annotations

import time

__all__ = ["LogThrottle"]


class LogThrottle:
    """Lets one line per key through each ``interval`` seconds.

    A Redis outage or a flood of forged messages would otherwise write a line per
    message; the metrics still count every one, the log says how many it held back.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """``None`` to stay quiet; otherwise how many lines were held back before this one."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)
