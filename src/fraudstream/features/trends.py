"""A customer's amounts over its recent days, from its bounded history: the trend features.

A bust-out ramps a card's amounts up day after day, each one still unremarkable; what
stands out is the direction. Both features read the customer's kept history (its
``history`` newest transactions, `fraudstream.features.history`) plus the transaction
itself, grouped by UTC day over the ``days`` days ending with the transaction's own:

- ``customer_amount_trend_<w>``: the least-squares slope of the daily mean amount against
  the day, divided by the mean of those daily means (taken as at least one cent): the
  relative change per day, scale-free. NaN with fewer than two days holding transactions.
- ``customer_rising_days_<w>``: how many successive days with transactions, going back
  from today, each had a higher mean amount than the day with transactions before it
  (empty days are skipped; 0 when today's mean is not above the previous day's).
- ``customer_amount_max_trend_<w>``, ``customer_rising_max_days_<w>``: the same over each
  day's largest amount, which follows a ramp even when ordinary payments go on beside it
  (their daily mean is as noisy as the customer's amounts).

One compiled pass per batch (`daily_trends`), integers until the last step and a fixed
order of operations, called by the online engine and the backfill alike on the same
history entries, so both get the same bits.

>>> day = 86_400_000_000
>>> prev_ts = np.array([[2 * day, day, 0]])
>>> prev_cents = np.array([[300, 200, 100]])
>>> trend, rising, _, _ = daily_trends(prev_ts, prev_cents, np.array([3 * day]), np.array([400]), 7)
>>> round(float(trend[0]), 3), int(rising[0])
(0.4, 3)
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
DAY_US = 86_400_000_000
NONE_TS = np.iinfo(np.int64).min


def daily_trends(
    prev_ts: I64, prev_cents: I64, ts: I64, cents: I64, days: int
) -> tuple[F64, F64, F64, F64]:
    """(trend, rising days) of each row's daily means, then of its daily largest amounts:
    ``prev_*`` (n, k) its customer's kept history (`NONE_TS` pads), ``ts`` / ``cents`` the
    transaction as the history keeps it."""
    n = len(ts)
    out = np.empty((4, n), dtype=np.float64)
    if n:
        _trends(prev_ts, prev_cents, ts, cents, days, NONE_TS, DAY_US, out)
    return out[0], out[1], out[2], out[3]


@njit(cache=True)
def _trends(prev_ts, prev_cents, ts, cents, days, none_ts, day_us, out):  # type: ignore[no-untyped-def]
    n, k = prev_ts.shape
    sums = np.zeros(days, dtype=np.int64)
    counts = np.zeros(days, dtype=np.int64)
    tops = np.zeros(days, dtype=np.int64)
    for i in range(n):
        sums[:] = 0
        counts[:] = 0
        tops[:] = 0
        today = ts[i] // day_us
        sums[0] = cents[i]
        counts[0] = 1
        tops[0] = cents[i]
        for j in range(k):
            if prev_ts[i, j] == none_ts:
                continue
            off = today - prev_ts[i, j] // day_us
            if 0 <= off < days:
                sums[off] += prev_cents[i, j]
                counts[off] += 1
                tops[off] = max(tops[off], prev_cents[i, j])
        ones = np.minimum(counts, 1)
        out[0, i] = _slope(sums, counts, days)
        out[1, i] = _rising(sums, counts, days)
        out[2, i] = _slope(tops, ones, days)
        out[3, i] = _rising(tops, ones, days)


@njit(cache=True)
def _slope(num, den, days):  # type: ignore[no-untyped-def]
    """Slope of the daily values ``num / den`` (days with ``den > 0``) against the day,
    over their mean (taken as at least one cent; NaN: under two days)."""
    m = 0
    sx = 0.0
    sy = 0.0
    for off in range(days):
        if den[off] > 0:
            m += 1
            sx += -off
            sy += num[off] / den[off]
    if m < 2:
        return np.nan
    xbar = sx / m
    ybar = sy / m
    sxx = 0.0
    sxy = 0.0
    for off in range(days):
        if den[off] > 0:
            dx = -off - xbar
            sxx += dx * dx
            sxy += dx * (num[off] / den[off] - ybar)
    return (sxy / sxx) / max(ybar, 1.0)


@njit(cache=True)
def _rising(num, den, days):  # type: ignore[no-untyped-def]
    """Successive days with transactions (``den > 0``), from today back, each with a higher
    ``num / den`` than the one before it (compared exactly, as cross products of integers)."""
    run = 0
    newer = 0
    for off in range(1, days):
        if den[off] == 0:
            continue
        if num[newer] * den[off] <= num[off] * den[newer]:
            break
        run += 1
        newer = off
    return float(run)
