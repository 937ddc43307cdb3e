"""The memory backend's parts on a broker whose clock the test moves: what expires, expires
when the test says, not after a wait."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from kindmap_realtime.backends.base import Backend, Session
from kindmap_realtime.backends.memory import MemoryBroker, open_memory_backend

CHANNEL = "kindmap_unit"
WINDOW = 30.0
EXPIRED_KEPT = 10.0


@dataclass
class Clock:
    """Seconds, as ``time.monotonic`` gives them; ``advance`` moves it on."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory_broker(clock: Clock) -> MemoryBroker:
    return MemoryBroker(expired_kept=EXPIRED_KEPT, clock=clock)


def replica(broker: MemoryBroker, name: str = "replica", **options: Any) -> Backend:
    """A replica's parts with recovery on (``options`` override ``open_memory_backend``'s)."""
    settings: dict[str, Any] = {"recovery_window": WINDOW, "recovery_max_messages": 10, "max_sessions": 4,
                                   "clock_skew": EXPIRED_KEPT, **options}
    return open_memory_backend(broker, channel=CHANNEL, instance_id=name, **settings)


async def joined(backend: Backend, user: str, sid: str = "sid-1") -> Session:
    """A socket of ``user`` with a new session, recorded by ``backend``'s presence."""
    assert backend.sessions is not None
    session = await backend.sessions.open(user, sid)
    await backend.presence.add(user, sid, session)
    return session


async def lost(backend: Backend, user: str, sid: str = "sid-1") -> Session:
    """As ``joined``, then its connection lost: kept for the window."""
    session = await joined(backend, user, sid)
    await backend.presence.remove(user, sid, session, keep=True)
    return session
