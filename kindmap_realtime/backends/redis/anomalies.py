"""What the routing functions find in Redis that no replica or emitter of ours writes.

A key of the wrong type, a hash far larger than its cap, a header that is not ours,
an entry whose signature fails: someone else wrote it (or an older version did).
The functions never fail on it -- a sender treats it as absent, a replica deletes it
-- and report it by name; each report is counted (``kindmap_redis_anomalies_total``
on a replica) and logged, a line per kind a second at most.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from ...log_throttle import LogThrottle

__all__ = ["Anomalies"]

logger = logging.getLogger(__name__)

# What each kind means for users, as the log says it. Kinds not listed are logged as they are.
_MEANING = {
    "presence_type": "a user's presence key is not a hash: the user looks offline until a replica repairs it",
    "sessions_type": "a user's sessions key is not a hash: their sessions cannot recover until a replica repairs it",
    "history_type": "a user's history key is not a list: messages to them are not stored until a replica repairs it",
    "history_header": "a user's history has no header of ours: messages to them are not stored",
    "inbox_type": "a replica's inbox is not a list: messages for it are dropped until it repairs it",
    "registry_type": "the registry of replicas was not a sorted set; repaired",
    "presence_size": "a user's presence hash is far over its cap: someone else writes it; the user looks offline",
    "sessions_size": "a user's sessions hash is far over its cap: someone else writes it; nothing is stored",
    "forged_presence": "a presence entry failed its signature check and was ignored",
    "forged_session": "a session entry failed its signature check and was ignored",
}
# Kinds that are an event of the service, not a sign of tampering.
_ERRORS = {"inbox_full": "a replica's inbox is full (the replica is not reading): a message for it was dropped"}
_WARNINGS = {"unreplicated": "a stored message was not confirmed by a replica of its master within the wait "
                            "(WAIT): a failover before the replica catches up would lose it"}
_INFO = {"history_full": "a user's history is full: a message was not stored for recovery; their next "
                         "recovery from before it fails (recovered: false)"}


class Anomalies:
    """Counts and logs the anomalies reported by the functions' replies.

    :param count: called with each kind found (a replica counts them in its metrics).
    """

    def __init__(self, count: Callable[[str], None] | None = None) -> None:
        self._count = count
        self._throttle = LogThrottle()

    def report(self, kinds: Iterable[bytes | str], **fields: str) -> None:
        for raw in kinds:
            kind = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            if self._count is not None:
                self._count(kind)
            held = self._throttle.allow(kind)
            if held is None:
                continue
            if kind in _ERRORS:
                level, message = logging.ERROR, _ERRORS[kind]
            elif kind in _WARNINGS:
                level, message = logging.WARNING, _WARNINGS[kind]
            elif kind in _INFO:
                level, message = logging.INFO, _INFO[kind]
            else:
                level, message = logging.WARNING, _MEANING.get(kind, "unexpected data in Redis")
            logger.log(level, message, extra={"anomaly": kind, "suppressed": held, **fields})
