"""`kernels.finalize` for the online engine: the feature matrix in one compiled pass.

`kernels.finalize` spends a dozen numpy calls on each of ~80 columns: for a batch of one
transaction that is ~3 ms of array set-up for a few hundred flops, most of the CPU an API
request costs. Here each column is an *op* (a kind code and the rows of its inputs), the
ops of a `Plan` are built once (`program_of`), and one numba function (`_columns`) runs
them over the batch's arrays.

Same values, bit for bit: the ops do what the numpy code does, in the same order, with only
operations IEEE 754 rounds exactly (``+ - * /``, ``sqrt``, comparisons, integer arithmetic
with Python's floor semantics), and pick a branch where numpy computes both and
``np.where``\\ s. What numpy computes with its own SIMD routines (``log``, ``sin``, ``cos``,
``arcsin``, ``hypot``: a compiled loop might round them otherwise) stays numpy: the
distances are computed with `kernels.distance` and handed in; the trends come from
`trends.daily_trends` (compiled already: its four columns of a window from one call, as in
`kernels`); ``distinct`` aggregates and any kind this module does not know go through
`kernels` column by column (the *fallback*), so a new kind works before it is compiled.
The offline backfill keeps `kernels.finalize`, and so do online batches above
`COMPILED_ROWS`: the parity tests compare the two paths on every feature, and
``tests/features/test_feat_compiled.py`` compares them bit for bit.

Compiled once into numba's cache (`FeatureEngine._warm_up` runs it before the first batch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fraudstream.features.definitions import (
    ENTITIES,
    HISTORY_DERIVED,
    Aggregate,
    Derived,
    parse_duration,
)
from fraudstream.features.kernels import (
    LATLON_CELLS,
    NONE_TS,
    TREND_ORDER,
    RawInputs,
    StackedSums,
    _aggregate_value,
    _derived,
    distance,
    history_entry,
)
from fraudstream.features.kernels import finalize as kernels_finalize
from fraudstream.features.layout import EMPTY_LO, GRID, HISTORY_CENTS_MAX, LATLON, US, Plan
from fraudstream.features.trends import daily_trends

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
ENTITY_ROW = {e: j for j, e in enumerate(ENTITIES)}

# Aggregate kinds (`_aggregate_value`).
A_COUNT, A_SUM, A_MEAN, A_STD, A_MIN, A_MAX, A_FRAUD, A_RISK = range(8)
AGG_KINDS = {
    "count": A_COUNT,
    "sum": A_SUM,
    "mean": A_MEAN,
    "std": A_STD,
    "min": A_MIN,
    "max": A_MAX,
    "fraud_count": A_FRAUD,
    "risk": A_RISK,
}
AGG_X = {A_STD: "q", A_MIN: "lo", A_MAX: "hi", A_FRAUD: "f", A_RISK: "f"}
"""The third counter an aggregate kind reads (beside ``n`` and ``s``)."""

# Derived kinds (`_derived`, `_ratio`, `_new_places`, `_static`).
(
    D_AMOUNT, D_WEEKEND, D_NIGHT, D_RATIO_MEAN, D_ZSCORE, D_PREV_MEDIAN, D_PREV_MAX,
    D_MEDIAN_BEFORE, D_SINCE_LAST, D_DISTANCE, D_SPEED, D_IMPOSSIBLE, D_DAYS_SINCE_FIRST,
    D_DAYS_SINCE_LAST, D_SEGMENT, D_PREFERRED, D_NEW_COUNT, D_NEW_SHARE, D_MEAN_RATIO,
    D_COUNT_RATIO, D_AMOUNT_RATIO,
) = range(21)  # fmt: skip
DIST_LAST, DIST_HOME, DIST_PROFILE = range(3)
"""Rows of the distances handed in (computed by numpy, see the module docs)."""
DISTANCE_OF = {
    "distance_from_last": DIST_LAST,
    "speed_from_last_kmh": DIST_LAST,
    "impossible_travel": DIST_LAST,
    "distance_from_home": DIST_HOME,
    "distance_from_profile_home": DIST_PROFILE,
}
SIMPLE = {
    "amount": D_AMOUNT,
    "is_weekend": D_WEEKEND,
    "is_night": D_NIGHT,
    "seconds_since_last_tx": D_SINCE_LAST,
    "days_since_first_fraud": D_DAYS_SINCE_FIRST,
    "days_since_last_fraud": D_DAYS_SINCE_LAST,
    "profile_segment": D_SEGMENT,
    "is_preferred_card": D_PREFERRED,
    "distance_from_last": D_DISTANCE,
    "distance_from_home": D_DISTANCE,
    "distance_from_profile_home": D_DISTANCE,
    "speed_from_last_kmh": D_SPEED,
    "impossible_travel": D_IMPOSSIBLE,
}
"""Derived kinds whose op needs no window (their parameter: the distance row, if any)."""
WINDOWED = {
    "amount_ratio_median_prev": D_PREV_MEDIAN,
    "amount_ratio_max_prev": D_PREV_MAX,
    "amount_ratio_median_before": D_MEDIAN_BEFORE,
    "new_terminal_count": D_NEW_COUNT,
    "new_terminal_share": D_NEW_SHARE,
}
"""Derived kinds over the kept history of a window (their parameter: the window in µs)."""
OP_WIDTH = 7
"""An op: (column, kind, then up to five parameters: sum rows, a presence row, a window)."""


@dataclass(frozen=True)
class Program:
    """A plan's columns as ops for `_columns`, and the columns left to `kernels`."""

    width: int
    sum_keys: tuple[tuple[str, str], ...]
    """(aggregate name, counter) of each row of the sums matrix the ops read."""
    aggs: I64
    """(ops, `OP_WIDTH`): column, kind, rows of ``n``, ``s`` and the third counter (-1: the
    aggregate has none, read as zeros), presence row."""
    derived: I64
    """(ops, `OP_WIDTH`): column, kind, parameters (see `_derived_op`)."""
    fallback_aggs: tuple[tuple[int, Aggregate], ...]
    fallback_derived: tuple[tuple[int, Derived], ...]
    trends: tuple[tuple[int, tuple[int, ...]], ...]
    """Per window of trend columns (days): the column of each of `daily_trends`' four
    values (-1: not a feature), all four from one call."""
    distances: tuple[int, ...]
    """Which distance rows the ops read."""
    seen: tuple[str, ...]
    """`FirstSeen` names, in column order after the derived ones."""


_PROGRAMS: dict[int, tuple[Plan, Program]] = {}


def program_of(plan: Plan) -> Program:
    """The plan's `Program`, built on first use (engines keep their plan for life)."""
    hit = _PROGRAMS.get(id(plan))
    if hit is None or hit[0] is not plan:
        hit = _PROGRAMS[id(plan)] = (plan, _build(plan))
    return hit[1]


def _build(plan: Plan) -> Program:
    fs = plan.features
    keys: dict[tuple[str, str], int] = {}

    def row(agg: Aggregate, counter: str) -> int:
        if counter not in agg.counters:
            return -1
        return keys.setdefault((agg.name, counter), len(keys))

    aggs, fallback_aggs = [], []
    for j, agg in enumerate(fs.aggregates):
        kind = AGG_KINDS.get(agg.agg)
        if kind is None:
            fallback_aggs.append((j, agg))
            continue
        third = row(agg, AGG_X[kind]) if kind in AGG_X else -1
        aggs.append([j, kind, row(agg, "n"), row(agg, "s"), third, ENTITY_ROW[agg.entity], 0])
    derived, fallback_derived, distances = [], [], set()
    trends: dict[int, list[int]] = {}
    for j, d in enumerate(fs.derived, start=len(fs.aggregates)):
        if d.kind in HISTORY_DERIVED:
            assert d.window is not None
            days = trends.setdefault(parse_duration(d.window) // 86_400, [-1] * 4)
            days[TREND_ORDER.index(d.kind)] = j
            continue
        op = _derived_op(d, row)
        if op is None:
            fallback_derived.append((j, d))
            continue
        derived.append([j, *op, *[0] * (OP_WIDTH - 1 - len(op))])
        if d.kind in DISTANCE_OF:
            distances.add(DISTANCE_OF[d.kind])
    return Program(
        width=len(fs.names),
        sum_keys=tuple(keys),
        aggs=np.array(aggs, dtype=np.int64).reshape(-1, OP_WIDTH),
        derived=np.array(derived, dtype=np.int64).reshape(-1, OP_WIDTH),
        fallback_aggs=tuple(fallback_aggs),
        fallback_derived=tuple(fallback_derived),
        trends=tuple((days, tuple(cols)) for days, cols in trends.items()),
        distances=tuple(sorted(distances)),
        seen=tuple(s.name for s in fs.first_seen),
    )


def _derived_op(d: Derived, at: Callable[[Aggregate, str], int]) -> list[int] | None:
    """(kind, parameters) of a derived column's op (``at``: the row of an aggregate's
    counter in the sums matrix); None: left to `kernels`."""
    kind = d.kind
    if kind in SIMPLE:
        return [SIMPLE[kind], DISTANCE_OF.get(kind, 0)]
    if kind in WINDOWED:
        assert d.window is not None
        return [WINDOWED[kind], parse_duration(d.window) * US]
    if kind in ("amount_ratio_mean", "amount_zscore"):
        (std,) = d.needs
        code = D_RATIO_MEAN if kind == "amount_ratio_mean" else D_ZSCORE
        return [code, at(std, "n"), at(std, "s"), at(std, "q")]
    if kind == "terminal_amount_ratio_mean":
        (mean,) = d.needs
        present = ENTITY_ROW[mean.entity]
        return [D_AMOUNT_RATIO, at(mean, "n"), at(mean, "s"), 0, 0, present]
    if kind in ("mean_ratio", "terminal_mean_ratio"):
        w, b = d.needs
        rows = [at(w, "n"), at(w, "s"), at(b, "n"), at(b, "s")]
        return [D_MEAN_RATIO, *rows, ENTITY_ROW[w.entity]]
    if kind == "terminal_count_ratio":
        assert d.base is not None
        w, b = d.needs
        days = parse_duration(d.base) // 86_400
        return [D_COUNT_RATIO, at(w, "n"), at(b, "n"), days, 0, ENTITY_ROW[w.entity]]
    return None


COMPILED_ROWS = 100
"""Batches up to this size take the compiled ops; larger ones `kernels.finalize` (the same
values): its set-up is paid once per column whatever the size, while the ops' per-row work
(a sort of the kept history per row and ratio) overtakes it at ~100-200 rows (measured:
0.4 vs 1.7 ms at 1 row, 12 vs 9 ms at 500)."""


def finalize(plan: Plan, raw: RawInputs) -> F64:
    """`kernels.finalize`, the same values: compiled for small batches (`COMPILED_ROWS`)."""
    if len(raw.ts) > COMPILED_ROWS:
        return kernels_finalize(plan, raw)
    return compiled_finalize(plan, raw)


def compiled_finalize(plan: Plan, raw: RawInputs) -> F64:
    """The compiled ops, then the fallback columns, whatever the batch size."""
    prog = program_of(plan)
    n = len(raw.ts)
    out = np.empty((n, prog.width))
    if isinstance(raw.sums, StackedSums):
        sums = raw.sums.matrix[raw.sums.layout.gather(prog.sum_keys)]
    else:
        sums = np.empty((len(prog.sum_keys), n), dtype=np.int64)
        for r, (name, counter) in enumerate(prog.sum_keys):
            sums[r] = raw.sums[name][counter]
    present = np.empty((len(ENTITIES), n), dtype=np.bool_)
    for e, r in ENTITY_ROW.items():
        present[r] = raw.present[e]
    seen = np.empty((2, len(prog.seen), n), dtype=np.bool_)
    for r, name in enumerate(prog.seen):
        seen[0, r], seen[1, r] = raw.first_seen[name], raw.seen_present[name]
    st = raw.static
    none = np.zeros(n, dtype=np.int64)
    _columns(
        out, prog.aggs, prog.derived, len(plan.features.aggregates) + len(plan.features.derived),
        sums, present, seen, _distances(plan, prog, raw),
        raw.ts, raw.cents, raw.amount, raw.last_ts, raw.last_loc_ts, raw.fraud_first,
        raw.fraud_last, np.ascontiguousarray(raw.prev_ts), np.ascontiguousarray(raw.prev_cents),
        np.ascontiguousarray(raw.prev_new), raw.new_place,
        st is not None, none if st is None else st.segment,
        none.view(np.uint64) if st is None else st.preferred_card,
        none.view(np.uint64) if st is None else st.card,
        plan.features.impossible_speed_kmh, plan.features.min_travel_km, NONE_TS,
    )  # fmt: skip
    if prog.trends:
        kept_ts, kept_cents = history_entry(raw.ts, raw.cents)
        for days, columns in prog.trends:
            values = daily_trends(raw.prev_ts, raw.prev_cents, kept_ts, kept_cents, days)
            for j, v in zip(columns, values, strict=True):
                if j >= 0:
                    out[:, j] = v
    if prog.fallback_aggs or prog.fallback_derived:
        cache: dict[str, F64] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            for j, agg in prog.fallback_aggs:
                out[:, j] = _aggregate_value(agg, raw.sums[agg.name], raw.present[agg.entity], n)
            for j, d in prog.fallback_derived:
                out[:, j] = _derived(plan, d, raw, cache)
    return out


def _distances(plan: Plan, prog: Program, raw: RawInputs) -> F64:
    """The distances the ops read, by `kernels.distance` (numpy's trigonometry): the
    transaction's place against each other place (last, home, profile home), in one call
    over the rows stacked (numpy computes each element alike, wherever it is)."""
    n = len(raw.ts)
    out = np.full((3, n), np.nan)
    other: dict[int, tuple[NDArray[np.uint8], F64, F64]] = {}
    for which in prog.distances:
        if which == DIST_LAST:
            other[which] = raw.last_loc_sys, raw.last_loc_a, raw.last_loc_b
        elif which == DIST_HOME:
            home = _home_cells(np.ascontiguousarray(raw.prev_ts), raw.prev_cell, NONE_TS)
            fs = plan.features
            other[which] = _centres(home, float(fs.home_cell_grid), float(fs.home_cell_deg))
        elif raw.static is not None:  # else NaN: no profiles read
            other[which] = raw.static.home_sys, raw.static.home_a, raw.static.home_b
    if other:
        m, places = len(other), list(other.values())
        sys, a, b = (np.concatenate([p[c] for p in places]) for c in range(3))
        here_sys, here_a, here_b = (
            np.concatenate([x] * m) for x in (raw.loc_sys, raw.loc_a, raw.loc_b)
        )
        out[list(other)] = distance(here_sys, here_a, here_b, sys, a, b).reshape(m, n)
    return out


@njit(cache=True)
def _home_cells(prev_ts, prev_cell, none_ts):  # type: ignore[no-untyped-def]
    """`kernels.row_mode` of the kept located entries (the most frequent cell, ties: the
    smallest; 0 for none)."""
    n, k = prev_ts.shape
    out = np.zeros(n, dtype=np.int64)
    buf = np.empty(k, dtype=np.int64)
    for i in range(n):
        m = 0
        for j in range(k):
            if prev_ts[i, j] != none_ts and prev_cell[i, j] > 0:
                buf[m] = prev_cell[i, j]
                m += 1
        if m == 0:
            continue
        srt = np.sort(buf[:m])
        best, best_run, run = srt[0], 1, 1
        for j in range(1, m):
            run = run + 1 if srt[j] == srt[j - 1] else 1
            if run > best_run:
                best, best_run = srt[j], run
        out[i] = best
    return out


def cells_of(plan: Plan, sys: NDArray[np.uint8], a: F64, b: F64) -> I64:
    """`kernels.cells`, the same integers, in one compiled loop (numpy: ~20 µs of masks
    and clips for one transaction): the online engine's history entries."""
    fs = plan.features
    out: I64 = _cells(sys, a, b, float(fs.home_cell_grid), float(fs.home_cell_deg))
    return out


@njit(cache=True, inline="always")
def _cell_index(x, top):  # type: ignore[no-untyped-def]
    """``np.clip(x, 0, top).astype(np.int64)`` of one float (NaN: numpy's cast of it)."""
    if x != x:
        return np.iinfo(np.int64).min
    return np.int64(min(max(x, 0.0), top))


@njit(cache=True)
def _cells(sys, a, b, grid, deg):  # type: ignore[no-untyped-def]
    out = np.zeros(sys.shape[0], dtype=np.int64)
    for i in range(sys.shape[0]):
        if sys[i] == GRID:
            gi = _cell_index(np.floor(a[i] / grid) + 16384, 32767.0)
            gj = _cell_index(np.floor(b[i] / grid) + 16384, 32767.0)
            out[i] = 1 + gi * 65536 + gj
        elif sys[i] == LATLON:
            li = _cell_index(np.floor((a[i] + 90.0) / deg), 32767.0)
            lj = _cell_index(np.floor((b[i] + 180.0) / deg), 65535.0)
            out[i] = LATLON_CELLS + li * 65536 + lj
    return out


@njit(cache=True)
def _centres(cell, grid, deg):  # type: ignore[no-untyped-def]
    """`kernels._cell_center` in one loop (numpy: ~12 µs of masks for one cell), the same
    values: integer floor division and remainder, then one exactly rounded ``+``, ``*``
    and ``-`` each, as numpy does them."""
    n = cell.shape[0]
    sys = np.zeros(n, dtype=np.uint8)
    a = np.full(n, np.nan)
    b = np.full(n, np.nan)
    for i in range(n):
        c = cell[i]
        if c >= LATLON_CELLS:
            sys[i] = LATLON
            a[i] = ((c - LATLON_CELLS) // 65536 + 0.5) * deg - 90.0
            b[i] = ((c - LATLON_CELLS) % 65536 + 0.5) * deg - 180.0
        elif c > 0:
            sys[i] = GRID
            a[i] = ((c - 1) // 65536 - 16384 + 0.5) * grid
            b[i] = ((c - 1) % 65536 - 16384 + 0.5) * grid
    return sys, a, b


@njit(cache=True, inline="always")
def _maximum(a, b):  # type: ignore[no-untyped-def]
    """``np.maximum`` of two floats (NaN wins)."""
    return a if a >= b or a != a else b


@njit(cache=True, inline="always")
def _std(n, s, q):  # type: ignore[no-untyped-def]
    """`kernels._std_cents` of one row (floats)."""
    var = (q - s * s / _maximum(n, 1.0)) / _maximum(n - 1.0, 1.0)
    return np.sqrt(_maximum(var, 0.0)) if n >= 2 else 0.0


@njit(cache=True, inline="always")
def _at(sums, row, i):  # type: ignore[no-untyped-def]
    """A counter's window value (0 where the aggregate has no such counter)."""
    return sums[row, i] if row >= 0 else 0


@njit(cache=True)
def _median_max(prev_ts, prev_cents, i, cut, before, none_ts, buf):  # type: ignore[no-untyped-def]
    """`kernels.row_median_max` of row ``i``'s kept entries timed from ``cut`` on (or, if
    ``before``, before it); NaN for none."""
    m = 0
    for j in range(prev_ts.shape[1]):
        t = prev_ts[i, j]
        if t != none_ts and (t < cut if before else t >= cut):
            buf[m] = prev_cents[i, j]
            m += 1
    if m == 0:
        return np.nan, np.nan
    srt = np.sort(buf[:m])
    return (srt[(m - 1) // 2] + srt[m // 2]) / 2.0, float(srt[m - 1])


@njit(cache=True, error_model="numpy")
def _columns(  # type: ignore[no-untyped-def]
    out, aggs, derived, seen_col, sums, present, seen, dist,
    ts, cents, amount, last_ts, last_loc_ts, fraud_first, fraud_last, prev_ts, prev_cents,
    prev_new, new_place, has_static, segment, preferred, card, speed_kmh, travel_km, none_ts,
):  # fmt: skip
    """Every op's column of ``out``, then the first-seen ones from ``seen_col`` on."""
    n = ts.shape[0]
    for a in range(aggs.shape[0]):
        j, kind, rn, rs, rx, pe, _ = aggs[a]
        for i in range(n):
            if not present[pe, i]:
                out[i, j] = np.nan
                continue
            cnt = float(_at(sums, rn, i))
            if kind == A_COUNT:
                v = cnt
            elif kind == A_SUM:
                v = sums[rs, i] / 100.0
            elif kind == A_MEAN:
                v = sums[rs, i] / _maximum(cnt, 1.0) / 100.0 if cnt > 0 else 0.0
            elif kind == A_STD:
                v = _std(cnt, float(sums[rs, i]), float(sums[rx, i])) / 100.0
            elif kind == A_MIN:
                v = sums[rx, i] / 100.0 if sums[rx, i] != EMPTY_LO else np.nan
            elif kind == A_MAX:
                v = sums[rx, i] / 100.0 if sums[rx, i] >= 0 else np.nan
            elif kind == A_FRAUD:
                v = float(sums[rx, i])
            else:
                v = sums[rx, i] / _maximum(cnt, 1.0) if cnt > 0 else 0.0
            out[i, j] = v
    buf = np.empty(prev_ts.shape[1], dtype=np.int64)
    for op in range(derived.shape[0]):
        j, kind, p0, p1, p2, p3, p4 = derived[op]
        for i in range(n):
            out[i, j] = _derived_value(
                kind, p0, p1, p2, p3, p4, i, sums, present, dist, ts, cents, amount, last_ts,
                last_loc_ts, fraud_first, fraud_last, prev_ts, prev_cents, prev_new, new_place,
                has_static, segment, preferred, card, speed_kmh, travel_km, none_ts, buf,
            )  # fmt: skip
    for f in range(seen.shape[1]):
        for i in range(n):
            out[i, seen_col + f] = (1.0 if seen[0, f, i] else 0.0) if seen[1, f, i] else np.nan


@njit(cache=True, error_model="numpy")
def _derived_value(  # type: ignore[no-untyped-def]
    kind, p0, p1, p2, p3, p4, i, sums, present, dist, ts, cents, amount, last_ts,
    last_loc_ts, fraud_first, fraud_last, prev_ts, prev_cents, prev_new, new_place,
    has_static, segment, preferred, card, speed_kmh, travel_km, none_ts, buf,
):  # fmt: skip
    """One derived value: transaction ``i`` of op ``kind`` (parameters ``p0``…)."""
    day_us, hour_us = 86_400 * US, 3_600 * US
    if kind == D_AMOUNT:
        return amount[i]
    if kind == D_WEEKEND:
        return 1.0 if ((ts[i] // day_us) + 3) % 7 >= 5 else 0.0
    if kind == D_NIGHT:
        return 1.0 if (ts[i] // hour_us) % 24 <= 6 else 0.0
    if kind == D_RATIO_MEAN or kind == D_ZSCORE:  # p0..p2: rows of n, s, q
        cnt, s = float(sums[p0, i]), float(sums[p1, i])
        mean = s / _maximum(cnt, 1.0)
        if kind == D_RATIO_MEAN:
            return cents[i] / _maximum(mean, 1.0) if cnt > 0 else np.nan
        std = _std(cnt, s, float(sums[p2, i]))
        return (cents[i] - mean) / std if std > 0 else 0.0
    if kind == D_PREV_MEDIAN or kind == D_PREV_MAX or kind == D_MEDIAN_BEFORE:  # p0: window
        before = kind == D_MEDIAN_BEFORE  # the entries older than the window, else in it
        median, top = _median_max(prev_ts, prev_cents, i, ts[i] - p0, before, none_ts, buf)
        ref = top if kind == D_PREV_MAX else median  # NaN: no such entry
        return amount[i] / (_maximum(ref, 1.0) / 100.0)
    if kind == D_SINCE_LAST:
        return abs(ts[i] - last_ts[i]) / US if last_ts[i] != none_ts else np.nan
    if kind == D_DISTANCE:
        return dist[p0, i]
    if kind == D_SPEED or kind == D_IMPOSSIBLE:
        known = last_loc_ts[i] != none_ts
        elapsed = abs(ts[i] - last_loc_ts[i]) if known else US
        speed = dist[p0, i] / (max(elapsed, US) / hour_us)
        if kind == D_SPEED:
            return speed
        return 1.0 if speed > speed_kmh and dist[p0, i] > travel_km else 0.0
    if kind == D_DAYS_SINCE_FIRST or kind == D_DAYS_SINCE_LAST:
        stamp = fraud_first[i] if kind == D_DAYS_SINCE_FIRST else fraud_last[i]
        return max(ts[i] - stamp, 0) / day_us if stamp != none_ts else np.nan
    if kind == D_SEGMENT:
        return float(segment[i]) if has_static and segment[i] >= 0 else np.nan
    if kind == D_PREFERRED:
        if not has_static or preferred[i] == 0 or card[i] == 0:
            return np.nan
        return 1.0 if card[i] == preferred[i] else 0.0
    if kind == D_NEW_COUNT or kind == D_NEW_SHARE:  # p0: window
        since = ts[i] - p0
        count, spent, there = 0, 0, 0
        for j in range(prev_ts.shape[1]):
            if prev_ts[i, j] != none_ts and prev_ts[i, j] >= since:
                spent += prev_cents[i, j]
                if prev_new[i, j]:
                    count += 1
                    there += prev_cents[i, j]
        if kind == D_NEW_COUNT:
            return float(count + (1 if new_place[i] else 0))
        own = min(cents[i], HISTORY_CENTS_MAX)
        spent += own
        there += own if new_place[i] else 0
        return there / max(spent, 1) if spent > 0 else 0.0
    if not present[p4, i]:  # the ratios: p4 is the presence row of their entity
        return np.nan
    if kind == D_AMOUNT_RATIO:  # p0, p1: rows of n, s
        cnt = float(sums[p0, i])
        mean = float(sums[p1, i]) / _maximum(cnt, 1.0)
        return cents[i] / _maximum(mean, 1.0) if cnt > 0 else np.nan
    if kind == D_COUNT_RATIO:  # p0, p1: rows of n and the base's n; p2: the base's days
        nb = float(sums[p1, i])
        return float(sums[p0, i]) / (nb / p2) if nb > 0 else np.nan
    # D_MEAN_RATIO: p0..p3: rows of n, s and the base's n, s
    cnt, nb = float(sums[p0, i]), float(sums[p2, i])
    if not (cnt > 0 and nb > 0):
        return np.nan
    mean = float(sums[p1, i]) / _maximum(cnt, 1.0)
    mean_b = float(sums[p3, i]) / _maximum(nb, 1.0)
    return mean / _maximum(mean_b, 1.0)
