"""kindmap_realtime/backends/memory/sessions.py: what only the memory store decides (the rest: the contract
suite, tests/integration/backends/): how long an unused claim lasts, histories bounded by bytes and age."""

from __future__ import annotations

from kindmap_realtime.backends.base import Claim
from kindmap_realtime.backends.memory import MemoryBroker

from .conftest import CHANNEL, EXPIRED_KEPT, WINDOW, Clock, joined, lost, replica


async def test_a_session_lasts_the_window_after_its_connection_is_lost(memory_broker: MemoryBroker) -> None:
    backend = replica(memory_broker)

    assert backend.sessions is not None and backend.sessions.lifetime == WINDOW


async def test_a_claim_its_connection_never_used_keeps_the_session_for_the_window(
        memory_broker: MemoryBroker, clock: Clock) -> None:
    backend = replica(memory_broker)
    assert backend.sessions is not None
    session = await lost(backend, "ana")
    clock.advance(WINDOW - 1)

    assert isinstance(await backend.sessions.claim("ana", session.pid, None), Claim)  # its socket never joins
    clock.advance(WINDOW - 1)
    assert isinstance(await backend.sessions.claim("ana", session.pid, None), Claim)
    clock.advance(WINDOW)
    assert await backend.sessions.claim("ana", session.pid, None) == "expired"


async def test_a_client_that_missed_more_bytes_than_a_replay_writes_recovers_nothing(
        memory_broker: MemoryBroker) -> None:
    backend = replica(memory_broker, recovery_max_replay_bytes=100)
    assert backend.sessions is not None
    session = await lost(backend, "ana")
    offsets = [(await backend.transport.publish_to_user(CHANNEL, "ana", b"x" * 40)).offset for _ in range(3)]

    assert await backend.sessions.claim("ana", session.pid, None) == "gone"
    claim = await backend.sessions.claim("ana", session.pid, offsets[0])
    assert isinstance(claim, Claim)
    assert [[offset for offset, _ in page] async for page in backend.sessions.history("ana", claim.session.start)] == [
        offsets[1:]]


async def test_messages_older_than_a_replay_accepts_are_not_kept(memory_broker: MemoryBroker, clock: Clock) -> None:
    """A replay drops as stale what is older than the window and the clock skew: kept, it would only cost memory."""
    backend = replica(memory_broker)
    assert backend.sessions is not None
    session = await joined(backend, "ana")
    old = (await backend.transport.publish_to_user(CHANNEL, "ana", b"old")).offset
    clock.advance(WINDOW + EXPIRED_KEPT)

    assert await backend.sessions.claim("ana", session.pid, None) == "gone"  # it missed only what is gone
    assert isinstance(await backend.sessions.claim("ana", session.pid, old), Claim)  # it had it
