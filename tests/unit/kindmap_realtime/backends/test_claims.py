"""kindmap_realtime/backends/claims.py: where a claimed session's replay starts, and how often it may be claimed."""

from __future__ import annotations

import pytest

from kindmap_realtime.backends.claims import CLAIM_BURST, CLAIM_INTERVAL_MS, next_claim_tat, replay_start, too_frequent


def test_a_session_may_be_claimed_a_burst_at_once_then_once_per_interval() -> None:
    tat, now = 0, 1_000_000
    for _ in range(CLAIM_BURST):
        assert not too_frequent(tat, now)
        tat = next_claim_tat(tat, now)

    assert too_frequent(tat, now)
    assert not too_frequent(tat, now + CLAIM_INTERVAL_MS)


# A history of generation 7 holding messages 5 to 9 (base 4, length 6 with its header), at most 10 of them.
HELD = {"base": 4, "length": 6, "unstored": -1, "limit": 10}


@pytest.mark.parametrize(("session_start", "offset", "start"), [
    ("7-5", None, "7-5"),
    ("7-5", "7-8", "7-8"),  # the client received more since
    ("7-5", "7-3", "7-5"),  # an older offset starts nothing earlier
    ("7-5", "6-9", "7-5"),  # an offset of another generation is ignored
    ("7-4", None, "7-4"),  # it missed everything held
])
def test_a_replay_starts_after_the_later_of_the_sessions_start_and_the_clients_offset(
        session_start: str, offset: str | None, start: str) -> None:
    assert replay_start(session_start, offset, "7", **HELD) == start


@pytest.mark.parametrize(("session_start", "offset", "generation", "changes"), [
    ("7-5", None, None, {}),  # the history is lost
    ("6-5", None, "7", {}),  # the session belongs to an earlier history
    ("7-3", None, "7", {}),  # what followed its start was trimmed
    ("7-5", "7-10", "7", {}),  # an offset the history never held
    ("7-5", None, "7", {"unstored": 6}),  # messages after it went unstored
    ("7-4", None, "7", {"limit": 4}),  # it missed more than is kept
])
def test_a_replay_that_would_miss_messages_cannot_start(session_start: str, offset: str | None,
                                                        generation: str | None, changes: dict[str, int]) -> None:
    assert replay_start(session_start, offset, generation, **{**HELD, **changes}) is None
