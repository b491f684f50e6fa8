"""The compiled feature matrix (`fraudstream.features.compiled`) = `kernels.finalize`, bit
for bit: on raw inputs drawn to hit every branch (empty windows, absent entities, NaN
places, no history, no profiles, saturated sums, zero amounts), and on what the online
engine gathers over a replayed history with late, duplicate and zero-amount transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
import redis

from featkit import transactions
from fraudstream.features import batch as batch_module
from fraudstream.features import compiled
from fraudstream.features.definitions import (
    ENTITIES,
    Aggregate,
    Derived,
    FeatureSet,
    FirstSeen,
    default_feature_set,
)
from fraudstream.features.kernels import NONE_TS, RawInputs, _cell_center, cells, finalize
from fraudstream.features.layout import EMPTY_LO, GRID, LATLON, S_CAP, US, Plan, compile_plan
from fraudstream.features.online import FeatureEngine
from fraudstream.features.profiles import StaticInputs, empty_profiles
from fraudstream.features.sample import synthetic_history

DAY = 86_400 * US
T = 1_700_000_000 * US
EXTREMES = FeatureSet(
    (
        Aggregate("customer", "min", "24h"),
        Aggregate("customer", "max", "7d"),
        Aggregate("customer", "max", "2d", delay="1d"),
        Aggregate("customer", "distinct", "24h", of="merchant"),
        Aggregate("customer", "std", "7d", where="ecommerce"),
        Aggregate("customer", "mean", "1d"),
        Aggregate("customer", "mean", "7d"),
        Aggregate("card", "count", "1h", where="zero_amount"),
        Aggregate("terminal", "risk", "7d", delay="7d"),
        Aggregate("terminal", "mean", "2d"),
        Aggregate("terminal", "mean", "14d"),
    ),
    (
        Derived("mean_ratio", "1d", base="7d"),
        Derived("terminal_count_ratio", "2d", base="14d"),
        Derived("terminal_mean_ratio", "2d", base="14d"),
        Derived("terminal_amount_ratio_mean", "14d"),
        Derived("new_terminal_share", "1d"),
        Derived("amount_ratio_max_prev", "1d"),
        Derived("amount_ratio_median_before", "1d"),
        Derived("distance_from_home"),
        Derived("is_weekend"),
    ),
    history=5,
    first_seen=(FirstSeen("terminal", words=4), FirstSeen("ip", words=4)),
)


def same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Equal bit for bit (every NaN alike: only the payload of a NaN may differ)."""
    assert a.shape == b.shape
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    bits_a = np.where(nan_a, 0.0, a).view(np.int64)
    bits_b = np.where(nan_b, 0.0, b).view(np.int64)
    bad = (nan_a != nan_b) | (bits_a != bits_b)
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        first = f"row {i} column {j}: {a[i, j]!r} != {b[i, j]!r}"
        pytest.fail(f"{bad.sum()} values differ; first: {first}")


def window_sums(plan: Plan, n: int, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Window values of every aggregate: a third of the windows empty, some saturated."""
    out: dict[str, dict[str, Any]] = {}
    for agg in plan.features.aggregates:
        count = rng.integers(0, 6, n) * (rng.random(n) > 0.33)
        cents = rng.integers(0, 200_000, n) * (rng.random(n) > 0.1)
        values = {
            "n": count,
            "s": np.where(rng.random(n) < 0.05, S_CAP, count * cents),
            "q": count * cents * cents + rng.integers(-5, 5, n),
            "f": np.minimum(count, rng.integers(0, 3, n)),
            "lo": np.where(count > 0, cents, EMPTY_LO),
            "hi": np.where(count > 0, cents, -1),
        }
        sketch = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n)
        out[agg.name] = {c: values.get(c, sketch).astype(np.int64) for c in agg.counters}
    return out


def raw_inputs(plan: Plan, n: int, seed: int, *, profiles: bool) -> RawInputs:
    rng = np.random.default_rng(seed)
    k = plan.features.history
    ts = T + rng.integers(-3 * DAY, 3 * DAY, n)
    cents = np.where(rng.random(n) < 0.2, 0, rng.integers(0, 10**9, n))
    kept = rng.random((n, k)) < 0.7
    kept[rng.random(n) < 0.2] = False  # no history at all
    prev_ts = np.where(kept, ts[:, None] - rng.integers(0, 90 * DAY, (n, k)) // US * US, NONE_TS)
    sys = rng.choice(np.array([0, GRID, LATLON], dtype=np.uint8), n)
    lat, lon = rng.uniform(-80, 80, n), rng.uniform(-170, 170, n)
    grid_a, grid_b = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    loc_a = np.where(sys == LATLON, lat, np.where(sys == GRID, grid_a, np.nan))
    loc_b = np.where(sys == LATLON, lon, np.where(sys == GRID, grid_b, np.nan))
    last_sys = rng.choice(np.array([0, GRID, LATLON], dtype=np.uint8), n)
    cell = np.where(rng.random((n, k)) < 0.2, 0, rng.integers(1, 4, (n, k)) * 65536 + 16384)
    known = rng.random(n) < 0.5
    fraud = ts - rng.integers(0, 60 * DAY, n)
    static = None
    if profiles:
        records = empty_profiles(n)
        records["segment"] = rng.integers(-1, 4, n)
        records["home_sys"], records["home_a"], records["home_b"] = sys[::-1], lat, lon
        records["card"] = rng.integers(0, 3, n).astype(np.uint64)
        static = StaticInputs.of(records, rng.integers(0, 3, n).astype(np.uint64))
    seen = {s.name: rng.random(n) < 0.5 for s in plan.features.first_seen}
    return RawInputs(
        ts=ts,
        cents=cents,
        amount=cents / 100.0,
        loc_sys=sys,
        loc_a=loc_a,
        loc_b=loc_b,
        sums=window_sums(plan, n, rng),
        present={e: rng.random(n) < 0.85 for e in ENTITIES},
        prev_ts=prev_ts,
        prev_cents=np.where(kept, rng.integers(0, 10**6, (n, k)) * (rng.random((n, k)) > 0.1), 0),
        prev_cell=np.where(kept, cell, 0),
        prev_new=kept & (rng.random((n, k)) < 0.3),
        new_place=rng.random(n) < 0.3,
        last_ts=np.where(rng.random(n) < 0.8, ts - rng.integers(-DAY, DAY, n), NONE_TS),
        last_loc_sys=last_sys,
        last_loc_a=np.where(last_sys > 0, grid_a[::-1] if n else grid_a, np.nan),
        last_loc_b=np.where(last_sys > 0, grid_b[::-1] if n else grid_b, np.nan),
        last_loc_ts=np.where(last_sys > 0, ts - rng.integers(0, DAY // 10, n), NONE_TS),
        fraud_first=np.where(known, fraud - DAY, NONE_TS),
        fraud_last=np.where(known, fraud, NONE_TS),
        static=static,
        first_seen=seen,
        seen_present={name: rng.random(n) < 0.8 for name in seen},
    )


@pytest.mark.parametrize("features", [default_feature_set(), EXTREMES], ids=["default", "extremes"])
@pytest.mark.parametrize("n", [1, 2, 17, 600])
@pytest.mark.parametrize("profiles", [True, False])
def test_compiled_equals_numpy_on_drawn_inputs(
    features: FeatureSet, n: int, profiles: bool
) -> None:
    plan = compile_plan(features)
    for seed in range(3):
        raw = raw_inputs(plan, n, seed, profiles=profiles)
        same_bits(compiled.compiled_finalize(plan, raw), finalize(plan, raw))


def test_every_default_kind_is_compiled() -> None:
    """The default feature set leaves only the co-visitation share (one vectorised call on
    the sketches' words, `neighbours.covisit_share`, the backfill's own) to `kernels`; the
    four trend columns of a window come from one `daily_trends` call (numba already)."""
    prog = compiled.program_of(compile_plan(default_feature_set()))
    assert not prog.fallback_aggs
    assert {d.kind for _, d in prog.fallback_derived} <= {"terminal_covisit_share"}
    assert sorted(days for days, _ in prog.trends) == [7, 14]


def recording(into: list[tuple[Plan, RawInputs]]) -> Callable[[Plan, RawInputs], np.ndarray]:
    def run(plan: Plan, raw: RawInputs) -> np.ndarray:
        into.append((plan, raw))
        return compiled.finalize(plan, raw)

    return run


@pytest.mark.integration
@pytest.mark.parametrize("features", [default_feature_set(), EXTREMES], ids=["default", "extremes"])
def test_compiled_equals_numpy_on_what_the_engine_gathers(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch, features: FeatureSet
) -> None:
    """Batches of 1 to 300 over a replayed history, some transactions late, some sent
    twice, a tenth of zero amount: each batch's raw inputs give the same matrix both ways."""
    history, _ = synthetic_history(n_customers=60, n_terminals=50, n_days=20, seed=3)
    rng = np.random.default_rng(3)
    amount = np.where(rng.random(history.height) < 0.1, 0.0, history["amount"].to_numpy())
    history = history.with_columns(pl.Series("amount", amount)).sort("timestamp")
    txs = transactions(history)
    late = rng.choice(len(txs), 40, replace=False)
    txs += [txs[i] for i in late]  # late (past the lateness, or redeliveries)
    seen: list[tuple[Plan, RawInputs]] = []
    monkeypatch.setattr(batch_module, "finalize", recording(seen))
    engine = FeatureEngine(client, features, clock=lambda: 2e9, lateness_s=600)
    at, sizes = 0, [1, 1, 2, 5, 300, 1, 17, 64]
    while at < len(txs):
        size = sizes[len(seen) % len(sizes)]
        engine.compute_batch(txs[at : at + size])
        at += size
    assert engine.stats.duplicates + engine.stats.late >= 40
    assert len(seen) > 30
    for plan, raw in seen:
        same_bits(compiled.compiled_finalize(plan, raw), finalize(plan, raw))


def test_cells_are_the_clipped_formula() -> None:
    """`kernels.cells` (what the history keeps, and the home features) is the clipped
    floor of each coordinate, grid and lat/lon, edges and out-of-range values included."""
    fs = default_feature_set()
    plan = compile_plan(fs)
    a = np.array([0.0, -0.0, 12.7, -1e9, 1e9, 48.85, -90.0, 90.0, 1e9, 0.0])
    b = np.array([0.0, 5.5, -3.2, 1e9, -1e9, 2.35, -180.0, 180.0, -1e9, 0.0])
    sys = np.array([GRID] * 5 + [LATLON] * 4 + [0], dtype=np.uint8)
    g, ll = sys == GRID, sys == LATLON
    want = np.zeros(len(a), dtype=np.int64)
    gi = np.clip(np.floor(a[g] / fs.home_cell_grid) + 16384, 0, 32767).astype(np.int64)
    gj = np.clip(np.floor(b[g] / fs.home_cell_grid) + 16384, 0, 32767).astype(np.int64)
    want[g] = 1 + gi * 65536 + gj
    li = np.clip(np.floor((a[ll] + 90.0) / fs.home_cell_deg), 0, 32767).astype(np.int64)
    lj = np.clip(np.floor((b[ll] + 180.0) / fs.home_cell_deg), 0, 65535).astype(np.int64)
    want[ll] = (1 << 31) + li * 65536 + lj
    assert cells(plan, sys, a, b).tolist() == want.tolist()
    assert cells(plan, sys[:1], a[:1], b[:1]).tolist() == want[:1].tolist()


@pytest.mark.parametrize(("grid", "deg"), [(5.0, 0.1), (0.3, 0.07)])
def test_compiled_cell_centres_are_numpys_bit_for_bit(grid: float, deg: float) -> None:
    """The home's centre (``distance_from_home``) computed in the compiled loop is
    `kernels._cell_center`'s, bit for bit, for grid and lat/lon cells and none."""
    fs = default_feature_set()
    plan = compile_plan(FeatureSet(fs.aggregates, home_cell_grid=grid, home_cell_deg=deg))
    rng = np.random.default_rng(5)
    grid_cells = 1 + rng.integers(0, 32768, 200) * 65536 + rng.integers(0, 65536, 200)
    ll_cells = (1 << 31) + rng.integers(0, 32768, 200) * 65536 + rng.integers(0, 65536, 200)
    edges = [0, 1, 65536, 32767 * 65536 + 65535 + 1, 1 << 31, (1 << 31) + 32767 * 65536 + 65535]
    cell = np.concatenate([np.array(edges), grid_cells, ll_cells]).astype(np.int64)
    want: list[np.ndarray] = list(_cell_center(plan, cell))
    got: list[np.ndarray] = list(compiled._centres(cell, grid, deg))
    for w, g in zip(want, got, strict=True):
        assert w.dtype == g.dtype and w.tobytes() == g.tobytes()


@pytest.mark.parametrize(("grid", "deg"), [(5.0, 0.1), (0.3, 0.07)])
def test_compiled_cells_are_numpys(grid: float, deg: float) -> None:
    """The online history's cells (`compiled.cells_of`) are `kernels.cells`' (the backfill's)
    for grid and lat/lon places, cell edges, out-of-range and non-finite values."""
    fs = default_feature_set()
    plan = compile_plan(FeatureSet(fs.aggregates, home_cell_grid=grid, home_cell_deg=deg))
    rng = np.random.default_rng(11)
    odd = [0.0, -0.0, 5.0, -5.0, 0.1, 89.99, -90.0, 90.0, 180.0, -180.0, 1e300, -1e300]
    odd += [np.inf, -np.inf, np.nan]
    a = np.concatenate([rng.uniform(-100, 100, 300), rng.uniform(-1e6, 1e6, 100), odd, odd])
    b = np.concatenate([rng.uniform(-200, 200, 300), rng.uniform(-1e6, 1e6, 100), odd, odd[::-1]])
    sys = rng.integers(0, 3, len(a)).astype(np.uint8)
    for s in (sys, np.full(len(a), GRID, np.uint8), np.full(len(a), LATLON, np.uint8)):
        with np.errstate(invalid="ignore", over="ignore"):
            want = cells(plan, s, a, b)
        assert compiled.cells_of(plan, s, a, b).tolist() == want.tolist()
    assert compiled.cells_of(plan, sys[:0], a[:0], b[:0]).tolist() == []
