"""kindmap_realtime/backends/memory/broker.py: every user's record expires, so memory follows what is live."""

from __future__ import annotations

from kindmap_realtime.backends.base import Claim
from kindmap_realtime.backends.memory import MemoryBroker

from .conftest import CHANNEL, EXPIRED_KEPT, WINDOW, Clock, joined, lost, replica


async def test_a_lost_sessions_record_answers_expired_then_unknown_then_is_gone(
        memory_broker: MemoryBroker, clock: Clock) -> None:
    backend = replica(memory_broker)
    assert backend.sessions is not None
    session = await lost(backend, "ana")

    clock.advance(WINDOW)
    assert await backend.sessions.claim("ana", session.pid, None) == "expired"
    clock.advance(EXPIRED_KEPT)
    assert await backend.sessions.claim("ana", session.pid, None) == "unknown"
    assert memory_broker.user(CHANNEL, "ana") is None  # sessions, history and record: all gone


async def test_a_connected_sockets_session_never_expires_and_keeps_its_history(
        memory_broker: MemoryBroker, clock: Clock) -> None:
    backend = replica(memory_broker)
    assert backend.sessions is not None
    session = await joined(backend, "ana")

    clock.advance(100 * WINDOW)

    assert isinstance(await backend.sessions.claim("ana", session.pid, None), Claim)


async def test_a_history_without_sessions_goes_after_the_window(memory_broker: MemoryBroker, clock: Clock) -> None:
    backend = replica(memory_broker)
    assert backend.sessions is not None
    await backend.sessions.open("ana", "sid-1")  # its socket never joined

    clock.advance(WINDOW - 1)
    assert memory_broker.user(CHANNEL, "ana") is not None
    clock.advance(1)
    assert memory_broker.user(CHANNEL, "ana") is None


async def test_a_socket_without_a_session_leaves_nothing_behind(memory_broker: MemoryBroker) -> None:
    backend = replica(memory_broker)
    await backend.presence.add("ana", "sid-1")

    await backend.presence.remove("ana", "sid-1", keep=True)

    assert memory_broker.user(CHANNEL, "ana") is None


async def test_whatever_fell_due_is_swept_at_the_next_look(memory_broker: MemoryBroker, clock: Clock) -> None:
    backend = replica(memory_broker)
    for n in range(50):
        await lost(backend, f"rider-{n}")

    clock.advance(WINDOW + EXPIRED_KEPT)
    memory_broker.sweep()

    assert [memory_broker.user(CHANNEL, f"rider-{n}") for n in range(50)] == [None] * 50


def test_history_generations_never_repeat_within_a_process() -> None:
    broker = MemoryBroker()
    generations = [broker.new_generation() for _ in range(1000)]

    assert len(set(generations)) == 1000 and generations == sorted(generations, key=int)
