"""Trend features (`fraudstream.features.trends`): the daily means and maxima of a customer's
kept history, the formulas' edges (one day, zero amounts, empty days, pads)."""

from __future__ import annotations

import numpy as np

from fraudstream.features.trends import DAY_US, NONE_TS, daily_trends


def one_row(
    days_cents: list[tuple[int, int]], today: int, cents: int, window: int = 7
) -> list[float]:
    """The four values for a transaction of ``cents`` on day ``today`` after the kept
    entries ``(day, cents)`` (newest first, padded to 8)."""
    pad = 8 - len(days_cents)
    ts = np.array([[d * DAY_US + 3600 for d, _ in days_cents] + [NONE_TS] * pad])
    amounts = np.array([[c for _, c in days_cents] + [0] * pad])
    out = daily_trends(ts, amounts, np.array([today * DAY_US + 7200]), np.array([cents]), window)
    return [float(v[0]) for v in out]


def test_a_ramp_rises_and_its_trend_is_relative() -> None:
    trend, rising, max_trend, rising_max = one_row([(12, 300), (11, 200), (10, 100)], 13, 400)
    assert (round(trend, 6), rising) == (0.4, 3.0)  # 100 a day over a mean of 250
    assert (round(max_trend, 6), rising_max) == (0.4, 3.0)
    scaled = one_row([(12, 3000), (11, 2000), (10, 1000)], 13, 4000)
    assert scaled[0] == trend  # scale-free


def test_the_largest_amount_follows_a_ramp_that_ordinary_payments_hide() -> None:
    # A payment rising 100 -> 110 -> 130 -> 150 a day, ordinary ones of 20 to 95 beside it.
    kept = [(12, 13000), (12, 3000), (11, 11000), (11, 9500), (10, 10000), (10, 2000)]
    _, rising, _, rising_max = one_row(kept, 13, 15000)
    assert rising == 1.0  # means 60, 102.5, 80, 150: only today's rose
    assert rising_max == 3.0  # maxima 100, 110, 130, 150


def test_edges_one_day_zero_amounts_and_empty_days() -> None:
    assert np.isnan(one_row([], 5, 1000)[0]) and one_row([], 5, 1000)[1] == 0.0
    assert np.isnan(one_row([(5, 900)], 5, 1000)[0])  # the same day: one day only
    zero = one_row([(4, 0)], 5, 0)
    assert zero[0] == 0.0 and zero[1] == 0.0  # flat at zero: no NaN, no rise
    gap = one_row([(1, 100)], 5, 200)  # days 2-4 empty: skipped, day 1 is "the one before"
    assert gap[1] == 1.0 and gap[0] > 0
    old = one_row([(0, 100)], 9, 200)  # outside the 7 days: not seen
    assert np.isnan(old[0]) and old[1] == 0.0
