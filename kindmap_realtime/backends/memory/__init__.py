"""The memory backend: a replica alone in its process (no ``REDIS_URL``), with the promises of Redis mode.

``open_backend("memory://", …)`` gives the embedded default the parts a replica on Redis
has -- directed delivery, presence with its caps, recoverable sessions and histories --
kept in this process (``broker``), so ``make dev`` recovers sessions, answers "stored" and
refuses as Redis mode does. Nothing crosses processes: an emitter elsewhere cannot reach
it, so only a replica may open it by URL.

The parts share one ``MemoryBroker`` and one ``Member`` (this replica's name and inbox).
Replicas sharing a broker act as replicas sharing a Redis: the unit tests pass one to
several backends (``open_memory_backend(broker=…)``).

May import: ``kindmap_realtime.backends`` (the interfaces, the claim rules), ``kindmap_realtime.messages``
and the library's errors and log throttle.
"""

from __future__ import annotations

import uuid

from ...errors import ConfigError
from ...messages.replay import DEFAULT_WINDOW
from ..base import Backend, KeyCheck
from .broker import Member, MemoryBroker
from .presence import MemoryPresence
from .sessions import MemorySessions
from .transport import MemoryTransport

__all__ = ["SCHEME", "URL", "MemoryBroker", "MemoryKeyCheck", "MemoryTransport", "check_url", "open_memory_backend"]

SCHEME = "memory"
URL = "memory://"


class MemoryKeyCheck(KeyCheck):
    """Nothing to check: the replicas and emitters of one broker live in one process, built with one key."""

    async def announce(self) -> None:
        """Nobody needs telling."""

    async def answer(self, nonce: str) -> None:
        """Nobody asks."""

    async def check(self) -> None:
        """Always the same key."""


def check_url(name: str, url: str) -> None:
    if url != URL:
        raise ConfigError(f"{name}: {URL} takes nothing after it (one replica's own backend, unnamed)")


def open_memory_backend(broker: MemoryBroker | None = None, *, channel: str, instance_id: str,
                        clock_skew: float = DEFAULT_WINDOW, recovery_window: float = 0.0,
                        recovery_max_messages: int = 0, recovery_max_replay_bytes: int = 0, max_sockets: int = 0,
                        max_sessions: int = 0, replica: bool = True,
                        transport: type[MemoryTransport] = MemoryTransport) -> Backend:
    """One replica's (or, with ``replica=False``, an emitter's) parts on ``broker`` (a new one if not given).

    The options are ``open_backend``'s; ``transport``: the class of its transport (a test's may fail on demand).
    """
    broker = MemoryBroker(expired_kept=clock_skew) if broker is None else broker
    member = Member(f"{instance_id}:{uuid.uuid4().hex[:12]}")
    presence = MemoryPresence(broker, member, channel=channel, recovery_window=recovery_window,
                              max_sockets=max_sockets, max_sessions=max_sessions)
    sessions = None
    if replica and recovery_window > 0:
        sessions = MemorySessions(broker, member, channel=channel, window=recovery_window,
                                  max_messages=recovery_max_messages, max_bytes=recovery_max_replay_bytes,
                                  clock_skew=clock_skew)
    return Backend(name="memory", transport=transport(broker, member), presence=presence, key_check=MemoryKeyCheck(),
                   sessions=sessions)
