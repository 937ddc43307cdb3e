"""bench/pacing.py: open-loop due times for the emitter."""

from __future__ import annotations

import math

import pytest

from bench.pacing import Schedule


def take_all(schedule: Schedule, now: float) -> list[float]:
    due = []
    while (time := schedule.take(now)) is not None:
        due.append(time)
    return due


def test_messages_are_due_one_interval_apart_from_the_start() -> None:
    schedule = Schedule(rate=4, duration=1, start=100.0)

    assert take_all(schedule, now=100.0) == [100.0, 100.25, 100.5, 100.75]


def test_the_schedule_does_not_slow_down_for_a_sender_that_fell_behind() -> None:
    schedule = Schedule(rate=10, duration=2, start=0.0)

    # A sender that wakes late still gets the overdue messages' original due times.
    assert [schedule.take(now=1.5) for _ in range(3)] == [0.0, 0.1, 0.2]


def test_nothing_is_sent_after_the_end_even_if_messages_are_left() -> None:
    schedule = Schedule(rate=10, duration=1, start=0.0)
    schedule.take(now=0.0)

    assert schedule.take(now=1.0) is None
    assert schedule.issued == 1


def test_an_unbounded_rate_makes_every_message_due_at_once_until_the_end() -> None:
    schedule = Schedule(rate=math.inf, duration=1, start=5.0)

    assert [schedule.take(now=5.5) for _ in range(3)] == [5.0, 5.0, 5.0]
    assert schedule.take(now=6.0) is None
    assert schedule.issued == 3


@pytest.mark.parametrize(("rate", "duration"), [(0, 1), (10, 0), (-1, 1)])
def test_rate_and_duration_must_be_positive(rate: float, duration: float) -> None:
    with pytest.raises(ValueError):
        Schedule(rate=rate, duration=duration, start=0.0)


def test_a_late_sender_takes_the_overdue_messages_as_one_batch_up_to_its_limit() -> None:
    schedule = Schedule(rate=10, duration=2, start=0.0)
    schedule.take(now=0.55)

    assert schedule.take_overdue(now=0.55, limit=100) == 5  # due at 0.1 .. 0.5
    assert schedule.take(now=0.55) == 0.6  # the next one is not overdue yet
    assert schedule.take_overdue(now=1.0, limit=2) == 2


def test_no_overdue_message_is_taken_after_the_end_of_the_step() -> None:
    schedule = Schedule(rate=10, duration=1, start=0.0)

    assert schedule.take_overdue(now=5.0, limit=100) == 0
    assert schedule.take_overdue(now=0.95, limit=100) == 10
    assert schedule.take(now=0.95) is None


def test_an_unbounded_rate_batches_up_to_the_limit() -> None:
    schedule = Schedule(rate=math.inf, duration=1, start=0.0)

    assert schedule.take_overdue(now=0.0, limit=500) == 500
