"""kindmap_realtime/backends/memory/history.py: a history keeps only what a replay could use, numbered as on Redis."""

from __future__ import annotations

import pytest

from kindmap_realtime.backends.memory.history import History, Limits


def history(max_messages: int = 10, max_bytes: int = 0, max_age: float = 60.0) -> History:
    return History("42", Limits(max_messages, max_bytes, max_age))


def test_offsets_carry_the_generation_and_count_up_from_one() -> None:
    kept = history()

    assert [kept.append(b"m%d" % n, 0.0) for n in range(3)] == ["42-1", "42-2", "42-3"]
    assert kept.read(0, 10) == [("42-1", b"m0"), ("42-2", b"m1"), ("42-3", b"m2")]
    assert kept.read(1, 1) == [("42-2", b"m1")]
    assert kept.read(3, 10) == []


def test_past_its_count_the_oldest_go_and_what_followed_them_can_no_longer_be_read() -> None:
    kept = history(max_messages=2)
    offsets = [kept.append(b"m%d" % n, 0.0) for n in range(4)]

    assert (len(kept), kept.base, kept.last) == (2, 2, 4)
    assert kept.read(2, 10) == [(offsets[2], b"m2"), (offsets[3], b"m3")]
    assert kept.read(1, 10) is None


def test_past_its_bytes_the_oldest_go() -> None:
    kept = history(max_bytes=10)
    for envelope in (b"aaaa", b"bbbb", b"cccc"):
        kept.append(envelope, 0.0)

    assert kept.read(kept.base, 10) == [("42-2", b"bbbb"), ("42-3", b"cccc")]


def test_a_message_larger_than_its_bytes_alone_is_not_stored_and_evicts_nothing() -> None:
    kept = history(max_bytes=10)
    kept.append(b"aaaa", 0.0)

    assert kept.append(b"x" * 11, 0.0) is None
    assert kept.read(0, 10) == [("42-1", b"aaaa")]


def test_no_byte_bound_when_it_is_zero() -> None:
    kept = history(max_bytes=0)
    for _ in range(5):
        kept.append(b"x" * 1000, 0.0)

    assert len(kept) == 5


def test_messages_older_than_its_age_go_when_it_is_trimmed() -> None:
    kept = history(max_age=60.0)
    kept.append(b"old", 0.0)
    kept.append(b"new", 30.0)

    kept.trim(59.9)
    assert len(kept) == 2
    kept.trim(60.0)
    assert kept.read(kept.base, 10) == [("42-2", b"new")] and kept.oldest == 30.0


def test_an_empty_history_keeps_its_numbering() -> None:
    kept = history(max_age=1.0)
    kept.append(b"m", 0.0)
    kept.trim(5.0)

    assert (len(kept), kept.last, kept.oldest) == (0, 1, None)
    assert kept.append(b"next", 5.0) == "42-2"


@pytest.mark.parametrize(("first", "second", "widest"), [
    (Limits(10, 100, 30.0), Limits(20, 50, 60.0), Limits(20, 100, 60.0)),
    (Limits(10, 0, 30.0), Limits(5, 50, 10.0), Limits(10, 0, 30.0)),
])
def test_the_widest_limits_keep_enough_for_either(first: Limits, second: Limits, widest: Limits) -> None:
    assert first.widest(second) == widest == second.widest(first)
