"""kindmap_realtime/backends/memory/presence.py: its upkeep releases what expired while nothing was written."""

from __future__ import annotations

import pytest

from kindmap_realtime.backends.memory import MemoryBroker
from kindmap_realtime.backends.memory.presence import MemoryPresence
from tests.helpers.waiting import eventually

from .conftest import EXPIRED_KEPT, WINDOW, Clock, lost, replica


async def test_the_upkeep_releases_expired_sessions_while_nothing_is_written(
        memory_broker: MemoryBroker, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kindmap_realtime.backends.memory.presence.SWEEP_INTERVAL", 0.01)
    backend = replica(memory_broker)
    await lost(backend, "ana")
    await backend.presence.start()
    try:
        clock.advance(WINDOW + EXPIRED_KEPT)

        await eventually(lambda: len(memory_broker) == 0, what="the upkeep's sweep")
    finally:
        await backend.presence.close()


async def test_closing_stops_the_upkeep(memory_broker: MemoryBroker) -> None:
    presence = replica(memory_broker).presence
    assert isinstance(presence, MemoryPresence)
    await presence.start()
    upkeep = presence._upkeep

    await presence.close()

    assert upkeep is not None and upkeep.cancelled()
