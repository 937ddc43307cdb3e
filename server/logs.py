"""Structured logging: one JSON object per line, set up only by entry points."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kindmap_realtime.log_throttle import LogThrottle

__all__ = ["JsonFormatter", "ThrottleFilter", "configure_logging"]

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str = "INFO") -> None:
    """Send JSON lines to stderr; quiet the libraries' per-request INFO chatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("socketio", "engineio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for library in ("socketio", "engineio", "aiohttp.server"):
        # They log per packet or request ("Cannot send to sid ..." for each emit to a closing
        # socket; aiohttp.server a traceback for each malformed HTTP request).
        library_logger = logging.getLogger(library)
        library_logger.filters[:] = [ThrottleFilter()]


class ThrottleFilter(logging.Filter):
    """A logger filter letting one record per message template through each second.

    For libraries that log once per packet: the template (``record.msg``, before its
    arguments) is the cause; the record that gets through carries ``suppressed``.
    """

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__()
        self._throttle = LogThrottle(interval)

    def filter(self, record: logging.LogRecord) -> bool:
        held = self._throttle.allow(f"{record.name}:{record.levelno}:{record.msg}")
        if held is None:
            return False
        if held:
            record.suppressed = held
        return True
