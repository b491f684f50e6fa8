"""The arithmetic both paths share: from exact raw inputs to feature values.

Online and offline gather the same *raw inputs* differently (Valkey state + batch vs. sorted
history), but those inputs are exact: integer counts, integer cents, microsecond timestamps,
the same previous-transaction matrix. Every floating-point operation after that happens here,
once, in numpy, so the two paths agree bit for bit rather than to a tolerance.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    HISTORY_DERIVED,
    NEIGHBOUR_KINDS,
    NEW_PLACE_DERIVED,
    PROFILE_KINDS,
    Aggregate,
    Derived,
    parse_duration,
)
from fraudstream.features.layout import EMPTY_LO, GRID, HISTORY_CENTS_MAX, LATLON, S_CAP, US, Plan
from fraudstream.features.trends import daily_trends

if TYPE_CHECKING:
    from fraudstream.features.neighbours import NeighbourInputs
    from fraudstream.features.profiles import StaticInputs

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Bools = NDArray[np.bool_]
NONE_TS = np.iinfo(np.int64).min
"""Timestamp meaning "never" (no previous transaction, no known fraud)."""
EARTH_KM = 6371.0088
DAY_US, HOUR_US = 86_400 * US, 3_600 * US


@dataclass
class SumLayout:
    """Where each (aggregate, counter) window sum sits in a `StackedSums` matrix."""

    rows: dict[str, dict[str, int]]
    """Aggregate name -> counter -> row."""
    _gathers: dict[tuple[tuple[str, str], ...], I64] = field(default_factory=dict)

    def gather(self, keys: tuple[tuple[str, str], ...]) -> I64:
        """The rows of ``keys`` ((aggregate, counter) pairs), as an index (built once)."""
        index = self._gathers.get(keys)
        if index is None:
            index = np.array([self.rows[a][c] for a, c in keys], dtype=np.int64)
            self._gathers[keys] = index
        return index


class StackedSums(Mapping[str, Mapping[str, I64]]):
    """Window sums as one matrix (a row per aggregate and counter, a column per
    transaction), read as ``sums[aggregate][counter]``. The online engine's windows come out
    of one compiled call per family as such a block; a dict of row views per aggregate and
    counter cost ~6 µs a family for a lone transaction (~60 views), and the compiled
    features then gathered them back into a matrix one by one. Now the compiled features
    take the rows they need in one indexing (`SumLayout.gather`); the dicts are built only
    for the aggregates something asks for by name (the columns `kernels` computes)."""

    def __init__(self, matrix: I64, layout: SumLayout) -> None:
        self.matrix = matrix
        self.layout = layout
        self._views: dict[str, dict[str, I64]] = {}

    def __getitem__(self, name: str) -> dict[str, I64]:
        view = self._views.get(name)
        if view is None:
            view = {c: self.matrix[r] for c, r in self.layout.rows[name].items()}
            self._views[name] = view
        return view

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout.rows)

    def __len__(self) -> int:
        return len(self.layout.rows)


@dataclass
class RawInputs:
    """Exact inputs for a set of transactions (rows in the caller's order)."""

    ts: I64
    cents: I64
    amount: F64
    loc_sys: NDArray[np.uint8]
    loc_a: F64
    loc_b: F64
    sums: Mapping[str, Mapping[str, I64]]
    """Aggregate name -> counter -> window sum (online: a `StackedSums`)."""
    present: dict[str, NDArray[np.bool_]]
    """Entity -> the transaction has an id for it."""
    prev_ts: I64
    """(n, history): the previous transactions of the customer, newest first, as the history
    keeps them (`history_entry`); NONE_TS pads."""
    prev_cents: I64
    prev_cell: I64
    prev_new: Bools
    """(n, history): the entry's transaction was at a terminal new to the customer."""
    new_place: Bools
    """The transaction itself is at a terminal new to the customer (False: not tracked)."""
    last_ts: I64
    """Exact time of the customer's newest earlier transaction (by event time; for a late
    one, the newer one it finds online); NONE_TS if none."""
    last_loc_sys: NDArray[np.uint8]
    last_loc_a: F64
    last_loc_b: F64
    last_loc_ts: I64
    fraud_first: I64
    fraud_last: I64
    static: StaticInputs | None = None
    """The customers' profiles (None: the feature set reads none)."""
    first_seen: dict[str, Bools] = field(default_factory=dict)
    """`FirstSeen` name -> first-seen flag (meaningful where the field is present)."""
    seen_present: dict[str, Bools] = field(default_factory=dict)
    """`FirstSeen` name -> the transaction has the field."""
    neighbours: NeighbourInputs | None = None
    """The co-visitation sketches of each transaction's customer and terminal (None: the
    feature set reads none)."""


def distinct_estimate(sketch: I64) -> F64:
    """Distinct values behind a 64-bit sketch (linear counting, ``-m ln(zeros / m)``): 1.01
    for one value, within ~15 % up to ~30, saturating at ~266 when every bit is set."""
    zeros = 64 - np.bitwise_count(sketch.view(np.uint64)).astype(np.float64)
    estimate: F64 = -64.0 * np.log(np.maximum(zeros, 1.0) / 64.0)
    return estimate


def sketch_bits(hashes: NDArray[np.uint64]) -> I64:
    """The one bit of a 64-bit ``distinct`` sketch each value sets (as int64 words)."""
    bits: I64 = np.left_shift(np.uint64(1), hashes % np.uint64(64)).view(np.int64)
    return bits


def history_entry(ts: I64, cents: I64) -> tuple[I64, I64]:
    """What the bounded customer history keeps of transactions: the time floored to the
    second (in µs) and the amount clipped at `HISTORY_CENTS_MAX` (see the blob layout)."""
    return ts // US * US, np.minimum(cents, HISTORY_CENTS_MAX)


def to_cents(amount: F64) -> I64:
    """Integer cents, clipped to ``[0, S_CAP]`` (NaN as 0): what state sums, so that no
    amount, however absurd, can overflow them.

    >>> to_cents(np.array([12.345, 0.0, 1e300, np.nan])).tolist()
    [1234, 0, 549755813887, 0]
    """
    cents = np.fmin(np.fmax(np.asarray(amount, dtype=np.float64) * 100.0, 0.0), float(S_CAP))
    return np.rint(cents).astype(np.int64)


LATLON_CELLS = 1 << 31
"""Home cells from here up are lat/lon ones, below grid ones (0: none)."""


def cells(plan: Plan, sys: NDArray[np.uint8], a: F64, b: F64) -> I64:
    """Home-cell id of each location (0 = no location)."""
    fs = plan.features
    out = np.zeros(len(sys), dtype=np.int64)
    # Each system only if present: a small batch often has one, and each step costs ~1 µs.
    if (grid := sys == GRID).any():
        gi = _within(np.floor(a[grid] / fs.home_cell_grid) + 16384, 32767).astype(np.int64)
        gj = _within(np.floor(b[grid] / fs.home_cell_grid) + 16384, 32767).astype(np.int64)
        out[grid] = 1 + gi * 65536 + gj
    if (ll := sys == LATLON).any():
        li = _within(np.floor((a[ll] + 90.0) / fs.home_cell_deg), 32767).astype(np.int64)
        lj = _within(np.floor((b[ll] + 180.0) / fs.home_cell_deg), 65535).astype(np.int64)
        out[ll] = LATLON_CELLS + li * 65536 + lj
    return out


def _within(x: F64, top: float) -> F64:
    """``np.clip(x, 0, top)`` in a quarter of the time on a few elements (``np.clip`` costs
    ~2 µs a call whatever the size). The same values but for the sign of a zero (``np.clip``
    keeps -0.0): only for what is then cast to integers."""
    return np.minimum(np.maximum(x, 0.0), top)


def _cell_center(plan: Plan, cell: I64) -> tuple[NDArray[np.uint8], F64, F64]:
    fs = plan.features
    sys = np.where(cell >= LATLON_CELLS, LATLON, np.where(cell > 0, GRID, 0)).astype(np.uint8)
    a = np.full(len(cell), np.nan)
    b = np.full(len(cell), np.nan)
    if (g := sys == GRID).any():
        a[g] = ((cell[g] - 1) // 65536 - 16384 + 0.5) * fs.home_cell_grid
        b[g] = ((cell[g] - 1) % 65536 - 16384 + 0.5) * fs.home_cell_grid
    if (ll := sys == LATLON).any():
        a[ll] = ((cell[ll] - LATLON_CELLS) // 65536 + 0.5) * fs.home_cell_deg - 90.0
        b[ll] = ((cell[ll] - LATLON_CELLS) % 65536 + 0.5) * fs.home_cell_deg - 180.0
    return sys, a, b


def distance(
    sys1: NDArray[np.uint8], a1: F64, b1: F64, sys2: NDArray[np.uint8], a2: F64, b2: F64
) -> F64:
    """Kilometres (haversine) between lat/lon points, grid units between grid points, NaN
    when either point is missing or the two use different systems."""
    out = np.full(len(sys1), np.nan)
    if (g := (sys1 == GRID) & (sys2 == GRID)).any():
        out[g] = np.hypot(a1[g] - a2[g], b1[g] - b2[g])
    if not (ll := (sys1 == LATLON) & (sys2 == LATLON)).any():
        return out
    p1, p2 = np.radians(a1[ll]), np.radians(a2[ll])
    dp, dl = p2 - p1, np.radians(b2[ll] - b1[ll])
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    out[ll] = 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    return out


def sorted_masked(values: I64, mask: NDArray[np.bool_]) -> tuple[I64, I64]:
    """Each row sorted with the masked-out entries last; and how many entries are kept."""
    big = np.iinfo(np.int64).max
    return np.sort(np.where(mask, values, big), axis=1), mask.sum(axis=1)


def row_median_max(values: I64, mask: NDArray[np.bool_]) -> tuple[F64, F64]:
    """Median and max of each row's kept entries (NaN for none)."""
    srt, cnt = sorted_masked(values, mask)
    rows = np.arange(len(cnt))
    lo = np.clip((cnt - 1) // 2, 0, None)
    hi = np.clip(cnt // 2, 0, srt.shape[1] - 1)
    top = np.clip(cnt - 1, 0, None)
    med = np.where(cnt > 0, (srt[rows, lo] + srt[rows, hi]) / 2.0, np.nan)
    mx = np.where(cnt > 0, srt[rows, top].astype(np.float64), np.nan)
    return med, mx


def row_mode(values: I64, mask: NDArray[np.bool_]) -> I64:
    """Most frequent kept value per row (ties: the smallest), 0 for an empty row."""
    srt, cnt = sorted_masked(values, mask)
    n, k = srt.shape
    if k == 0:
        return np.zeros(n, dtype=np.int64)
    pos = np.broadcast_to(np.arange(k), (n, k))
    new = np.ones((n, k), dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    run = np.where(pos < cnt[:, None], pos - start + 1, 0)
    best = run.argmax(axis=1)
    return np.where(cnt > 0, srt[np.arange(n), best], 0)


def finalize(plan: Plan, raw: RawInputs) -> F64:
    """The feature matrix (n, len(plan.names)), float64, columns in `plan.names` order."""
    fs = plan.features
    n = len(raw.ts)
    out = np.empty((n, len(fs.aggregates) + len(fs.derived) + len(fs.first_seen)))
    j = 0
    cache: dict[str, F64] = {}
    # One error state for every column (entering one costs as much as a small column):
    # empty windows divide by zero on purpose, the `np.where`s pick what is meant.
    with np.errstate(divide="ignore", invalid="ignore"):
        for agg in fs.aggregates:
            out[:, j] = _aggregate_value(agg, raw.sums[agg.name], raw.present[agg.entity], n)
            j += 1
        for d in fs.derived:
            out[:, j] = _derived(plan, d, raw, cache)
            j += 1
    for seen in fs.first_seen:
        flag = raw.first_seen[seen.name].astype(np.float64)
        out[:, j] = np.where(raw.seen_present[seen.name], flag, np.nan)
        j += 1
    return out


def _aggregate_value(
    spec: Aggregate, sums: Mapping[str, I64], present: NDArray[np.bool_], n: int
) -> F64:
    """One aggregate's column (inside `finalize`'s error state)."""
    agg = spec.agg
    counts = (sums["n"] if "n" in sums else np.zeros(n, dtype=np.int64)).astype(np.float64)
    if agg == "count":
        out = counts
    elif agg == "sum":
        out = sums["s"] / 100.0
    elif agg == "mean":
        out = np.where(counts > 0, sums["s"] / np.maximum(counts, 1) / 100.0, 0.0)
    elif agg == "std":
        out = _std_cents(sums) / 100.0
    elif agg == "min":
        out = np.where(sums["lo"] != EMPTY_LO, sums["lo"] / 100.0, np.nan)
    elif agg == "max":
        out = np.where(sums["hi"] >= 0, sums["hi"] / 100.0, np.nan)
    elif agg == "distinct":
        out = distinct_estimate(sums[spec.counters[0]])
    elif agg == "fraud_count":
        out = sums["f"].astype(np.float64)
    else:
        out = np.where(counts > 0, sums["f"] / np.maximum(counts, 1), 0.0)
    return np.where(present, out, np.nan)


def _std_cents(sums: Mapping[str, I64]) -> F64:
    n = sums["n"].astype(np.float64)
    s = sums["s"].astype(np.float64)
    q = sums["q"].astype(np.float64)
    var = (q - s * s / np.maximum(n, 1)) / np.maximum(n - 1, 1)
    return np.where(n >= 2, np.sqrt(np.maximum(var, 0.0)), 0.0)


def _derived(plan: Plan, d: Derived, raw: RawInputs, cache: dict[str, F64]) -> F64:
    """One derived column (inside `finalize`'s error state)."""
    fs = plan.features
    kind = d.kind
    if kind == "amount":
        return raw.amount.copy()
    if kind == "is_weekend":
        return (((raw.ts // DAY_US) + 3) % 7 >= 5).astype(np.float64)
    if kind == "is_night":
        return ((raw.ts // HOUR_US) % 24 <= 6).astype(np.float64)
    if kind in ("amount_ratio_mean", "amount_zscore"):
        sums = raw.sums[f"customer_amount_std_{d.window}"]
        n = sums["n"].astype(np.float64)
        s = sums["s"].astype(np.float64)
        mean = s / np.maximum(n, 1)
        if kind == "amount_ratio_mean":  # a zero reference counts as one cent
            return np.where(n > 0, raw.cents / np.maximum(mean, 1.0), np.nan)
        std = _std_cents(sums)
        return np.where(std > 0, (raw.cents - mean) / std, 0.0)
    if kind in ("amount_ratio_median_prev", "amount_ratio_max_prev"):
        assert d.window is not None
        key = f"hist{d.window}"
        if key + "med" not in cache:
            since = raw.ts - parse_duration(d.window) * US
            mask = (raw.prev_ts != NONE_TS) & (raw.prev_ts >= since[:, None])
            cache[key + "med"], cache[key + "max"] = row_median_max(raw.prev_cents, mask)
        ref = cache[key + ("med" if "median" in kind else "max")]  # NaN: no history
        return raw.amount / (np.maximum(ref, 1.0) / 100.0)
    if kind == "amount_ratio_median_before":  # against the usual before a recent ramp
        assert d.window is not None
        cut = raw.ts - parse_duration(d.window) * US
        mask = (raw.prev_ts != NONE_TS) & (raw.prev_ts < cut[:, None])
        median, _ = row_median_max(raw.prev_cents, mask)  # NaN: nothing that old
        return raw.amount / (np.maximum(median, 1.0) / 100.0)
    if kind == "seconds_since_last_tx":
        # Absolute: a late transaction is measured against the newer one it finds.
        last = raw.last_ts
        return np.where(last != NONE_TS, np.abs(raw.ts - last) / US, np.nan)
    if kind == "distance_from_home":
        mask = (raw.prev_ts != NONE_TS) & (raw.prev_cell > 0)
        home_sys, ha, hb = _cell_center(plan, row_mode(raw.prev_cell, mask))
        return distance(raw.loc_sys, raw.loc_a, raw.loc_b, home_sys, ha, hb)
    if kind in ("distance_from_last", "speed_from_last_kmh", "impossible_travel"):
        dist = distance(
            raw.loc_sys, raw.loc_a, raw.loc_b, raw.last_loc_sys, raw.last_loc_a, raw.last_loc_b
        )
        if kind == "distance_from_last":
            return dist
        known = raw.last_loc_ts != NONE_TS
        elapsed = np.where(known, np.abs(raw.ts - np.where(known, raw.last_loc_ts, 0)), US)
        speed: F64 = dist / (np.maximum(elapsed, US) / HOUR_US)
        if kind == "speed_from_last_kmh":
            return speed
        fast = (speed > fs.impossible_speed_kmh) & (dist > fs.min_travel_km)
        return np.asarray(fast, dtype=np.float64)
    if kind in PROFILE_KINDS:
        return _static(kind, raw)
    if kind in NEIGHBOUR_KINDS:
        nb = raw.neighbours
        return np.full(len(raw.ts), np.nan) if nb is None else nb.share()
    if kind in RATIO_KINDS:
        return _ratio(d, raw)
    if kind in NEW_PLACE_DERIVED:
        return _new_places(d, raw)
    if kind in HISTORY_DERIVED:
        assert d.window is not None
        key = f"trend{d.window}"
        if key not in cache:
            now_ts, now_cents = history_entry(raw.ts, raw.cents)
            days = parse_duration(d.window) // 86_400
            trends = daily_trends(raw.prev_ts, raw.prev_cents, now_ts, now_cents, days)
            for kind_of, values in zip(TREND_ORDER, trends, strict=True):
                cache[key + kind_of] = values
        return cache[key + kind]
    stamp = raw.fraud_first if kind == "days_since_first_fraud" else raw.fraud_last
    # Never negative: a label of a later fraud may reach a late transaction online.
    known = stamp != NONE_TS
    return np.where(known, np.maximum(raw.ts - np.where(known, stamp, 0), 0) / DAY_US, np.nan)


TREND_ORDER = ("amount_trend", "rising_days", "max_trend", "rising_max_days")
"""What `daily_trends` returns, in order."""
RATIO_KINDS = frozenset(
    {
        "mean_ratio",
        "terminal_mean_ratio",
        "terminal_count_ratio",
        "terminal_amount_ratio_mean",
    }
)


def _ratio(d: Derived, raw: RawInputs) -> F64:
    """Ratios of window sums (inside `finalize`'s error state). An empty window (the
    transaction itself not counted: a duplicate) gives NaN; a zero mean as reference
    counts as one cent, so a zero amount never gives NaN."""
    first = raw.sums[d.needs[0].name]
    n, s = first["n"].astype(np.float64), first["s"].astype(np.float64)
    if d.kind == "terminal_amount_ratio_mean":  # the amount / the window's mean
        out = np.where(n > 0, raw.cents / np.maximum(s / np.maximum(n, 1.0), 1.0), np.nan)
    else:
        base = raw.sums[d.needs[1].name]
        nb, sb = base["n"].astype(np.float64), base["s"].astype(np.float64)
        if d.kind == "terminal_count_ratio":  # count / the base's mean count per day
            assert d.base is not None
            per_day = nb / (parse_duration(d.base) // 86_400)
            out = np.where(nb > 0, n / np.where(nb > 0, per_day, 1.0), np.nan)
        else:  # mean over the window / mean over the base
            mean, mean_b = s / np.maximum(n, 1.0), sb / np.maximum(nb, 1.0)
            out = np.where((n > 0) & (nb > 0), mean / np.maximum(mean_b, 1.0), np.nan)
    return np.where(raw.present[d.needs[0].entity], out, np.nan)


def _new_places(d: Derived, raw: RawInputs) -> F64:
    """Over the transaction and its customer's kept entries of the last ``window``
    (``[t - window, t]``): how many were at terminals new to it, or the share of their
    amount spent there (0 when they spent nothing)."""
    assert d.window is not None
    since = raw.ts - parse_duration(d.window) * US
    kept = (raw.prev_ts != NONE_TS) & (raw.prev_ts >= since[:, None])
    new = kept & raw.prev_new
    if d.kind == "new_terminal_count":
        count: F64 = (new.sum(axis=1) + raw.new_place).astype(np.float64)
        return count
    _, own = history_entry(raw.ts, raw.cents)  # amounts as the history keeps them
    spent = np.where(kept, raw.prev_cents, 0).sum(axis=1) + own
    there = np.where(new, raw.prev_cents, 0).sum(axis=1) + np.where(raw.new_place, own, 0)
    share: F64 = np.where(spent > 0, there / np.maximum(spent, 1), 0.0)
    return share


def _static(kind: str, raw: RawInputs) -> F64:
    st = raw.static
    if st is None:
        return np.full(len(raw.ts), np.nan)
    if kind == "profile_segment":
        return np.where(st.segment >= 0, st.segment.astype(np.float64), np.nan)
    if kind == "distance_from_profile_home":
        return distance(raw.loc_sys, raw.loc_a, raw.loc_b, st.home_sys, st.home_a, st.home_b)
    known = (st.preferred_card != 0) & (st.card != 0)
    return np.where(known, (st.card == st.preferred_card).astype(np.float64), np.nan)
