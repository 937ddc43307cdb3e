"""kindmap_realtime/messages/replay.py: a signed envelope is accepted once, and only near its sender's time."""

from __future__ import annotations

from typing import Any

import pytest

from kindmap_realtime.errors import InvalidEnvelopeError
from kindmap_realtime.messages.replay import ReplayGuard

NOW = 1_800_000_000.0
WINDOW = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def envelope(envelope_id: str = "a", *, offset: float = 0.0) -> dict[str, Any]:
    return {"method": "emit", "host_id": "h", "ts": int((NOW + offset) * 1000), "id": envelope_id}


def running_guard(clock: Clock | None = None, **kwargs: Any) -> ReplayGuard:
    """A guard made a window ago, as on a replica that has been up a while."""
    clock = clock or Clock()
    clock.now -= WINDOW
    guard = ReplayGuard(WINDOW, clock=clock, **kwargs)
    clock.now += WINDOW
    return guard


def refusal(guard: ReplayGuard, message: dict[str, Any]) -> str:
    with pytest.raises(InvalidEnvelopeError) as caught:
        guard.check(message)
    return caught.value.reason


def test_an_envelope_is_accepted_once_and_its_repeat_is_a_replay() -> None:
    guard = running_guard()
    guard.check(envelope("a"))
    guard.check(envelope("b"))
    assert refusal(guard, envelope("a")) == "replayed"


@pytest.mark.parametrize("offset", [-WINDOW - 0.01, WINDOW + 0.01, -3600.0])
def test_an_envelope_outside_the_window_either_way_is_stale(offset: float) -> None:
    assert refusal(running_guard(), envelope(offset=offset)) == "stale"


@pytest.mark.parametrize("offset", [-WINDOW + 0.01, WINDOW - 0.01])
def test_clock_skew_within_the_window_is_accepted(offset: float) -> None:
    running_guard().check(envelope(offset=offset))


def test_a_new_guard_refuses_envelopes_stamped_before_it_existed_as_stale() -> None:
    guard = ReplayGuard(WINDOW, clock=Clock())  # a replica starting now, after envelopes were recorded

    assert refusal(guard, envelope("recorded", offset=-1.0)) == "stale"
    guard.check(envelope("new"))


def test_a_replay_after_the_window_is_stale_and_the_id_is_forgotten() -> None:
    clock = Clock()
    guard = running_guard(clock)
    guard.check(envelope("a"))
    clock.now += WINDOW + 1
    assert refusal(guard, envelope("a")) == "stale"
    guard.check({**envelope("b"), "ts": int(clock.now * 1000)})
    assert len(guard) == 1


def test_memory_stays_bounded_and_a_forgotten_id_still_cannot_pass_twice() -> None:
    guard = running_guard(max_ids=100)
    for n in range(1000):
        guard.check({**envelope(f"id-{n}"), "ts": int(NOW * 1000) - 1000 + n})
    assert len(guard) == 100
    assert refusal(guard, {**envelope("id-0"), "ts": int(NOW * 1000) - 1000}) == "stale"
    assert refusal(guard, {**envelope("id-999"), "ts": int(NOW * 1000) - 1}) == "replayed"


@pytest.mark.parametrize("fields", [{"ts": None}, {"ts": "1"}, {"ts": True}, {"id": ""}, {"id": 5}])
def test_a_signed_envelope_without_a_usable_time_or_id_is_invalid(fields: dict[str, Any]) -> None:
    assert refusal(running_guard(), {**envelope(), **fields}) == "invalid_envelope"
