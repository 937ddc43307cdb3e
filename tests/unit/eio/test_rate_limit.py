"""server/eio/rate_limit.py: token buckets on a clock the test turns by hand."""

from __future__ import annotations

import pytest

from server.eio.rate_limit import FloodGuard, KeyedBuckets, TokenBucket, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_bucket_lets_a_burst_through_then_the_rate(clock: Clock) -> None:
    bucket = TokenBucket(rate=2, burst=3, clock=clock)

    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.now += 100
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]  # refills only up to the burst


def test_flood_guard_answers_once_a_second_and_drops_the_rest_silently(clock: Clock) -> None:
    guard = FloodGuard(rate=1, burst=2, strikes=3, clock=clock)

    assert [guard.check() for _ in range(5)] == [Verdict.PASS, Verdict.PASS, Verdict.NOTIFY, Verdict.DROP,
                                                 Verdict.DROP]
    clock.now += 0.5
    assert guard.check() is Verdict.DROP  # half a token: still over


def test_flood_guard_closes_after_strikes_in_consecutive_seconds(clock: Clock) -> None:
    guard = FloodGuard(rate=1, burst=1, strikes=3, clock=clock)
    verdicts = []
    for _ in range(3):
        verdicts += [guard.check() for _ in range(3)]
        clock.now += 1.0

    P, N, D, C = Verdict.PASS, Verdict.NOTIFY, Verdict.DROP, Verdict.CLOSE
    assert verdicts == [P, N, D, P, N, D, P, C, D]


def test_flood_guard_forgives_a_client_that_slows_down_when_told(clock: Clock) -> None:
    guard = FloodGuard(rate=1, burst=1, strikes=2, clock=clock)
    for _ in range(5):
        assert guard.check() is Verdict.PASS
        assert guard.check() is Verdict.NOTIFY  # over once ...
        clock.now += 3.0  # ... then quiet: the strike does not add up


def test_keyed_buckets_limit_each_key_on_its_own(clock: Clock) -> None:
    buckets = KeyedBuckets(rate=1, burst=2, clock=clock)

    assert [buckets.take("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert buckets.take("10.0.0.2") is True


def test_keyed_buckets_stay_bounded_when_keys_keep_changing(clock: Clock) -> None:
    buckets = KeyedBuckets(rate=1, burst=2, max_keys=100, clock=clock)

    for i in range(10_000):
        buckets.take(f"10.0.{i // 256}.{i % 256}")
        assert len(buckets) <= 100
    assert [buckets.take("10.0.39.15") for _ in range(2)] == [True, False]  # the newest keys are remembered
