"""bench/stats.py: percentiles, latency summaries and loss counting."""

from __future__ import annotations

import pytest

from bench.stats import count_losses, percentile, summarize_latency


@pytest.mark.parametrize(("q", "expected"), [(0, 10.0), (50, 25.0), (100, 40.0), (99, 39.7), (25, 17.5)])
def test_percentile_interpolates_between_the_nearest_ranks(q: float, expected: float) -> None:
    assert percentile([10.0, 20.0, 30.0, 40.0], q) == pytest.approx(expected)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_no_values_or_q_out_of_range(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_latency_summary_sorts_and_reports_milliseconds() -> None:
    summary = summarize_latency([0.003, 0.001, 0.002])

    assert summary.count == 3
    assert summary.p50_ms == pytest.approx(2.0)
    assert summary.p99_ms == pytest.approx(2.98)
    assert summary.max_ms == pytest.approx(3.0)


def test_latency_summary_of_nothing_received_has_no_percentiles() -> None:
    summary = summarize_latency([])

    assert (summary.count, summary.p50_ms, summary.p99_ms, summary.max_ms) == (0, None, None, None)


def test_losses_are_counted_client_by_client_so_a_surplus_never_hides_a_loss() -> None:
    losses = count_losses(expected={"alice": 3, "bob": 2}, received={"alice": 1, "bob": 4})

    assert (losses.expected, losses.received, losses.lost, losses.extra) == (5, 5, 2, 2)
    assert losses.delivered_fraction == pytest.approx(3 / 5)


def test_a_client_that_received_nothing_lost_all_and_an_unexpected_one_is_extra() -> None:
    losses = count_losses(expected={"alice": 2}, received={"mallory": 1})

    assert (losses.lost, losses.extra, losses.delivered_fraction) == (2, 1, 0.0)


def test_nothing_expected_and_nothing_received_is_fully_delivered() -> None:
    assert count_losses({}, {}).delivered_fraction == 1.0
