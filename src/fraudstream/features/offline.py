"""Offline backfill: the online features of every transaction of a history, vectorised.

The history is processed in event-time order (ties keep their input order), which is the
order a replay through the online engine uses. Window sums are prefix-sum differences between
``searchsorted`` bounds on (entity, tile) keys; labels become intervals of scoring time during
which they count (from ``max(reported_at, first tile that sees them)`` to the end of the last
such tile) and are swept per terminal. Everything then goes through `kernels.finalize`, the
same code the online engine uses, in chunks so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from numpy.typing import NDArray

from fraudstream.errors import SchemaError
from fraudstream.features.definitions import (
    DISTINCT_FIELDS,
    ENTITIES,
    Aggregate,
    FeatureSet,
    default_feature_set,
)
from fraudstream.features.kernels import (
    NONE_TS,
    RawInputs,
    cells,
    finalize,
    history_entry,
    sketch_bits,
    to_cents,
)
from fraudstream.features.layout import (
    GRID,
    LATLON,
    Q_CLIP_CENTS,
    Family,
    Plan,
    cap_of,
    combine,
    compile_plan,
    empty_value,
)
from fraudstream.features.neighbours import Neighbourhood, NeighbourInputs
from fraudstream.features.profiles import StaticInputs, empty_profiles, profile_records
from fraudstream.features.seen import SeenState, replay, value_hashes

I64 = NDArray[np.int64]
REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
OPTIONAL_STR = ("merchant_id", "channel", "card_id", "device_id", "ip", "product_category")
OPTIONAL_F64 = ("lat", "lon", "x", "y")
CHUNK_CELLS = 1 << 21
"""Rows per chunk times the history bound: the previous-transaction matrices of a chunk
stay ~16 MB each."""
_KEY = 1 << 40
SEEN_CHUNK = 1 << 18
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FeatureRows:
    """Backfilled features in processing order (event time, ties in input order), one row
    per distinct ``transaction_id``, as a matrix: what training wants, without a second
    copy in a data frame."""

    ids: pl.Series
    """``transaction_id`` of each row."""
    rows: I64
    """Each row's position in the history given."""
    values: NDArray[np.float64]
    """(rows, features), float64, column-major."""
    names: list[str]


def backfill(
    history: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    definitions: FeatureSet | None = None,
    *,
    lateness_s: int = 3600,
    profiles: pl.DataFrame | None = None,
    since: datetime | None = None,
    neighbours: Neighbourhood | None = None,
) -> pl.DataFrame:
    """Features of every transaction of ``history`` as the online engine computes them:
    `backfill_rows` as a data frame in input order (arguments as there).

    Returns:
        ``transaction_id`` plus one float64 column per feature, rows in input order.
    """
    got = backfill_rows(
        history,
        labels,
        definitions,
        lateness_s=lateness_s,
        profiles=profiles,
        since=since,
        neighbours=neighbours,
    )
    back = np.argsort(got.rows, kind="stable")
    return pl.DataFrame(
        [
            got.ids.gather(back),
            *(pl.Series(name, got.values[back, j]) for j, name in enumerate(got.names)),
        ]
    )


def backfill_rows(
    history: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    definitions: FeatureSet | None = None,
    *,
    lateness_s: int = 3600,
    profiles: pl.DataFrame | None = None,
    since: datetime | None = None,
    neighbours: Neighbourhood | None = None,
) -> FeatureRows:
    """Features of every transaction of ``history`` as the online engine computes them.

    Args:
        history: our transaction columns (at least ``transaction_id``, ``timestamp``,
            ``customer_id``, ``terminal_id``, ``amount``); a repeated ``transaction_id`` is
            kept once (its first row), as the online engine ignores the replay.
        labels: ``transaction_id``, ``is_fraud``, ``reported_at`` and, if absent, the
            ``terminal_id`` / ``tx_timestamp`` are taken from ``history``.
        definitions: the feature set (default: `default_feature_set`).
        lateness_s: must equal the online engine's (it sizes the tile rings).
        profiles: customer profiles (`fraudstream.features.profiles`), as loaded online;
            without them the static features are NaN.
        since: only transactions at or after this instant get a row (the earlier ones
            still count in every window): training asks for its window only, and memory
            follows the rows asked for, not the history's length.
        neighbours: the co-visitation neighbourhood (`fraudstream.features.neighbours`),
            as loaded online; without it the co-visit feature is NaN.

    Raises:
        SchemaError: a required column is missing or has nulls, naming it.
    """
    plan = compile_plan(definitions or default_feature_set(), lateness_s=lateness_s)
    frame = prepare_history(history)
    n = frame.height
    ts = frame["ts"].to_numpy()
    cents = to_cents(frame["amount"].to_numpy())
    channel = frame["channel"].to_numpy()
    codes = {e: _codes(frame, f) for e, f in ENTITIES.items()}
    label_frame = prepare_labels(labels, frame)
    terminals = pl.DataFrame(
        {"terminal_id": frame["terminal_id"], "terminal_code": codes["terminal"]}
    ).unique("terminal_id")
    label_frame = label_frame.join(terminals, on="terminal_id", how="left").with_columns(
        pl.col("terminal_code").fill_null(-1)
    )
    lo = 0 if since is None else int(np.searchsorted(ts, _epoch_us_of(since), side="left"))

    first_seen, seen_present = _first_seen(plan, frame, codes["customer"])
    new_place = _new_place(plan, first_seen, seen_present, n)
    sketches = {what: _sketch(frame, what) for what in plan.features.distinct_of}
    orders = {e: _EntityOrder.of(codes[e]) for e in {f.entity for f in plan.families}}
    windows = [
        _Windows.of(fam, orders[fam.entity], ts, cents, channel, sketches) for fam in plan.families
    ]
    frauds = _fraud_counts(plan, label_frame, codes["terminal"], ts, lo)
    del sketches
    sys, a, b = _locations(frame)
    cust = codes["customer"]
    first, last = _known_fraud(plan, label_frame, codes["terminal"], ts)
    order = orders["customer"].order if "customer" in orders else _EntityOrder.of(cust).order
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    sorted_cust = cust[order]
    seg_start = np.searchsorted(sorted_cust, cust, side="left")
    pool_ts, pool_cents = ts[order], cents[order]
    kept_ts, kept_cents = history_entry(pool_ts, pool_cents)
    pool_cell = cells(plan, sys, a, b)[order]
    pool_new = new_place[order]
    last_idx = _previous_located(sys[order] > 0, sorted_cust)[pos]
    del sorted_cust

    static = _static_inputs(plan, frame, profiles)
    hood = (
        NeighbourInputs.of(neighbours, frame["customer_id"], frame["terminal_id"])
        if plan.features.uses_neighbours
        else None
    )
    out = np.empty((n - lo, len(plan.names)), order="F")
    amount = frame["amount"].to_numpy()
    k = plan.features.history
    step = max(1024, CHUNK_CELLS // k)
    for start in range(lo, n, step):
        rows = np.arange(start, min(n, start + step))
        idx = pos[rows, None] - 1 - np.arange(k)[None, :]
        ok = idx >= seg_start[rows, None]
        idx = np.where(ok, idx, 0)
        li = last_idx[rows]
        has_last = li >= 0
        li_src = order[np.where(has_last, li, 0)]
        sums: dict[str, dict[str, I64]] = {}
        for w in windows:
            w.sums_at(rows, sums)
        for name, f in frauds.items():
            sums.setdefault(name, {})["f"] = f[rows - lo]
        raw = RawInputs(
            ts=ts[rows],
            cents=cents[rows],
            amount=amount[rows],
            loc_sys=sys[rows],
            loc_a=a[rows],
            loc_b=b[rows],
            sums=sums,
            present={e: codes[e][rows] >= 0 for e in ENTITIES},
            prev_ts=np.where(ok, kept_ts[idx], NONE_TS),
            prev_cents=np.where(ok, kept_cents[idx], 0),
            prev_cell=np.where(ok, pool_cell[idx], 0),
            prev_new=ok & pool_new[idx],
            new_place=new_place[rows],
            last_ts=np.where(ok[:, 0], pool_ts[idx[:, 0]], NONE_TS),
            last_loc_sys=np.where(has_last, sys[li_src], 0).astype(np.uint8),
            last_loc_a=np.where(has_last, a[li_src], np.nan),
            last_loc_b=np.where(has_last, b[li_src], np.nan),
            last_loc_ts=np.where(has_last, ts[li_src], NONE_TS),
            fraud_first=first[rows],
            fraud_last=last[rows],
            static=None
            if static is None
            else StaticInputs(**{k: v[rows] for k, v in vars(static).items()}),
            first_seen={name: v[rows] for name, v in first_seen.items()},
            seen_present={name: v[rows] for name, v in seen_present.items()},
            neighbours=None if hood is None else hood.take(rows),
        )
        out[rows - lo] = finalize(plan, raw)
    rows_in = frame["_row"].to_numpy()[lo:].astype(np.int64)
    return FeatureRows(frame["transaction_id"][lo:], rows_in, out, list(plan.names))


def _epoch_us_of(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


def _static_inputs(
    plan: Plan, frame: pl.DataFrame, profiles: pl.DataFrame | None
) -> StaticInputs | None:
    """Each transaction's customer profile and card hash, as the online engine reads them."""
    if not plan.features.uses_profiles:
        return None
    n = frame.height
    if profiles is None:
        return StaticInputs.none(n)
    ids, records = profile_records(profiles)
    index = pl.DataFrame({"customer_id": ids, "_p": np.arange(len(ids))})
    at = frame.select(pl.col("customer_id").cast(pl.String)).join(
        index, on="customer_id", how="left", maintain_order="left"
    )["_p"]
    chosen = np.concatenate([records, empty_profiles(1)])[at.fill_null(len(ids)).to_numpy()]
    card = np.zeros(n, dtype=np.uint64)
    if "card_id" in frame.columns:
        cards = frame["card_id"].cast(pl.String)
        uniq = cards.drop_nulls().unique(maintain_order=True)
        lookup = dict(zip(uniq.to_list(), value_hashes(uniq.to_list()).tolist(), strict=True))
        card = np.array(
            [lookup.get(c, 0) if c is not None else 0 for c in cards.to_list()], dtype=np.uint64
        )
    return StaticInputs.of(chosen, card)


def prepare_history(history: pl.DataFrame) -> pl.DataFrame:
    """Checked, typed, de-duplicated and in processing order, with ``ts`` in epoch µs."""
    for col in REQUIRED:
        if col not in history.columns:
            raise SchemaError(col, "required column is missing")
        nulls = history[col].null_count()
        if nulls:
            raise SchemaError(col, f"{nulls} rows have no value")
    frame = history.with_row_index("_row")
    for col in OPTIONAL_STR:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    for col in OPTIONAL_F64:
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(col))
    frame = frame.with_columns(
        *(pl.col(c).cast(pl.String) for c in ("transaction_id", *ENTITIES.values())),
        pl.col("product_category").cast(pl.String),
        _epoch_us(pl.col("timestamp")).alias("ts"),
        pl.col("channel").fill_null("card_present"),
        pl.col("amount").cast(pl.Float64),
    ).with_columns(pl.col("merchant_id").fill_null(pl.col("terminal_id")))
    bad = frame.filter(~(pl.col("amount") >= 0) | pl.col("amount").is_nan())
    if bad.height:
        raise SchemaError("amount", f"must be >= 0, got {bad['amount'][0]!r}")
    # Both copy every column: skipped when a file is already unique and in time order (the
    # usual case), which spares a Handbook-sized history two copies of itself.
    if frame["transaction_id"].n_unique() < frame.height:
        frame = frame.unique("transaction_id", keep="first", maintain_order=True)
    if not frame["ts"].is_sorted():
        frame = frame.sort(["ts", "_row"])
    return frame


def _epoch_us(col: pl.Expr) -> pl.Expr:
    return col.dt.cast_time_unit("us").dt.epoch("us")


def prepare_labels(labels: pl.DataFrame | None, history: pl.DataFrame) -> pl.DataFrame:
    """Fraud labels, one per transaction (the first reported), with terminal and event time."""
    schema = {"terminal_id": pl.String, "tx_ts": pl.Int64, "rep": pl.Int64}
    if labels is None or labels.height == 0:
        return pl.DataFrame(schema=schema)
    for col in ("transaction_id", "is_fraud", "reported_at"):
        if col not in labels.columns:
            raise SchemaError(col, "required label column is missing")
    frame = labels.filter(pl.col("is_fraud")).with_row_index("_lrow")
    known = history.select("transaction_id", "terminal_id", pl.col("ts").alias("_hts"))
    drop = [c for c in ("terminal_id",) if c in frame.columns]
    frame = frame.with_columns(pl.col("transaction_id").cast(pl.String))
    frame = frame.join(known, on="transaction_id", how="left", suffix="_h")
    if drop:
        frame = frame.with_columns(pl.col("terminal_id").cast(pl.String))
        frame = frame.with_columns(pl.col("terminal_id").fill_null(pl.col("terminal_id_h")))
    tx_ts = _epoch_us(pl.col("tx_timestamp")) if "tx_timestamp" in frame.columns else None
    frame = frame.with_columns(
        (tx_ts.fill_null(pl.col("_hts")) if tx_ts is not None else pl.col("_hts")).alias("tx_ts"),
        _epoch_us(pl.col("reported_at")).alias("rep"),
    )
    frame = frame.filter(pl.col("terminal_id").is_not_null() & pl.col("tx_ts").is_not_null())
    early = frame.filter(pl.col("tx_ts") > pl.col("rep"))
    if early.height:
        raise SchemaError("reported_at", f"before the transaction ({early['transaction_id'][0]})")
    frame = frame.sort(["rep", "_lrow"]).unique("transaction_id", keep="first", maintain_order=True)
    return frame.select(schema.keys())


def _codes(frame: pl.DataFrame, column: str) -> I64:
    """Dense integer code per distinct id, -1 where the id is missing."""
    ranks = frame.select(pl.col(column).rank("dense").cast(pl.Int64).fill_null(0))
    return ranks.to_series().to_numpy() - 1


@dataclass(frozen=True)
class _EntityOrder:
    """Transactions grouped by one entity (stable: processing order inside a group), shared
    by every family of that entity."""

    code: I64
    order: I64
    pos: I64
    """Processing row -> its place in ``order``."""
    any: bool
    """Some transaction has the entity (else its windows are all empty)."""

    @classmethod
    def of(cls, code: I64) -> _EntityOrder:
        order = np.argsort(code, kind="stable")
        pos = np.empty(len(code), dtype=np.int64)
        pos[order] = np.arange(len(code))
        return cls(code, order, pos, bool((code >= 0).any()))


@dataclass
class _Windows:
    """One family's window sums, ready to be read for any rows: prefix sums (and prefix
    extremes) in (entity, tile) order, kept whole, so each chunk of rows costs memory in
    proportion to the chunk, not to the history."""

    fam: Family
    entity: _EntityOrder
    keys: I64
    prefix: dict[str, I64]
    rough: dict[str, NDArray[np.float64]]
    """Float prefix sums, only for counters whose int64 prefix may wrap (see `_saturated`)."""
    extremes: dict[str, I64]

    @classmethod
    def of(
        cls,
        fam: Family,
        entity: _EntityOrder,
        ts: I64,
        cents: I64,
        channel: NDArray[np.object_],
        sketches: dict[str, I64],
    ) -> _Windows:
        if not entity.any:
            return cls(fam, entity, np.zeros(0, np.int64), {}, {}, {})
        order = entity.order
        keys = entity.code[order] * _KEY + ts[order] // fam.tile_us
        counted = (entity.code >= 0) & fam.counts(channel, cents)
        w = counted[order]
        ordered = cents[order]
        prefix: dict[str, I64] = {}
        rough: dict[str, NDArray[np.float64]] = {}
        for c in fam.counters:
            if c not in ("n", "s", "q"):
                continue
            if c == "n":
                added = w.astype(np.int64)
            else:
                c_cents = ordered if c == "s" else np.minimum(ordered, Q_CLIP_CENTS) ** 2
                added = np.where(w, c_cents, 0)
            prefix[c] = np.concatenate([[0], np.cumsum(added)])
            if float(np.sum(added, dtype=np.float64)) >= 2.0**62:
                rough[c] = np.concatenate([[0.0], np.cumsum(added, dtype=np.float64)])
        extremes: dict[str, I64] = {}
        start = np.searchsorted(keys, keys, side="left")
        for c in fam.counters:
            if c in ("lo", "hi") or c.startswith("d_"):
                raw = sketches[c[2:]] if c.startswith("d_") else cents
                v = np.where(w, raw[order], empty_value(c))
                extremes[c] = _prefix_combine(c, v, start)
        return cls(fam, entity, keys, prefix, rough, extremes)

    def sums_at(self, rows: I64, into: dict[str, dict[str, I64]]) -> None:
        """Each aggregate's counters (but ``f``: `_fraud_counts`) for ``rows``."""
        fam = self.fam
        if not self.entity.any:
            for agg in fam.aggregates:
                sums = into.setdefault(agg.name, {})
                for c in agg.counters:
                    if c != "f":
                        sums[c] = np.full(len(rows), empty_value(c), dtype=np.int64)
            return
        kp = self.entity.pos[rows]
        # Needles in key order, so the binary searches walk memory forwards (~10x faster
        # than in row order); results go back to row order at the end.
        srt = np.argsort(kp, kind="stable")
        here = kp[srt]
        needle = self.keys[here]
        back = np.empty_like(srt)
        back[srt] = np.arange(len(srt))
        for agg in fam.aggregates:
            sums = into.setdefault(agg.name, {})
            wanted = [c for c in agg.counters if c in self.prefix]
            if wanted:
                left = np.searchsorted(self.keys, needle - (agg.lag + agg.tiles - 1), "left")
                right = np.minimum(np.searchsorted(self.keys, needle - agg.lag, "right"), here + 1)
                right = np.maximum(right, left)
                for c in wanted:
                    total = _saturated(self.prefix[c], self.rough.get(c), left, right, cap_of(c))
                    sums[c] = total[back]
            for c in agg.counters:
                if c in self.extremes:
                    sums[c] = self._extreme(c, agg, here, needle)[back]

    def _extreme(self, c: str, agg: Aggregate, here: I64, needle: I64) -> I64:
        """The min / max / distinct counter as the online tiles combine it: the row's own
        tile up to itself, plus the whole earlier tiles of the window."""
        prefix, op, empty = self.extremes[c], combine(c), empty_value(c)
        out = np.full(len(here), empty, dtype=np.int64)
        for d in range(agg.lag, agg.lag + agg.tiles):
            if d == 0:
                out = op(out, prefix[here])
                continue
            j = np.searchsorted(self.keys, needle - d, side="right") - 1
            hit = (j >= 0) & (self.keys[np.maximum(j, 0)] == needle - d)
            out = op(out, np.where(hit, prefix[np.maximum(j, 0)], empty))
        return out


def _saturated(
    exact: I64, rough: NDArray[np.float64] | None, left: I64, right: I64, cap: int
) -> I64:
    """Window sums from prefix sums, saturated at ``cap`` as the online tiles are. The int64
    prefix sums of a long history may wrap, but a difference of two is still exact when the
    true sum is below 2**63; the float64 ones (rounded, never wrapped; only built when the
    whole history's sum could wrap) tell when it is not.
    """
    total = exact[right] - exact[left]
    if rough is None:
        clipped: I64 = np.minimum(total, cap)
        return clipped
    huge = rough[right] - rough[left] >= 2.0**62
    out: I64 = np.where(huge, cap, np.minimum(total, cap))
    return out


def _sketch(frame: pl.DataFrame, what: str) -> I64:
    """Each transaction's ``distinct`` sketch bit for ``what`` (0 where it lacks the field)."""
    values = frame[DISTINCT_FIELDS[what]].cast(pl.String)
    uniq = values.drop_nulls().unique(maintain_order=True)
    bits = sketch_bits(value_hashes(uniq.to_list()))
    index = pl.DataFrame({"_v": uniq, "_b": bits})
    joined = pl.DataFrame({"_v": values}).join(index, on="_v", how="left", maintain_order="left")
    return joined["_b"].fill_null(0).to_numpy().astype(np.int64)


def _prefix_combine(counter: str, v: I64, start: I64) -> I64:
    """Each element combined with the earlier ones of its group (``start``: group's first)."""
    frame = pl.DataFrame({"g": start, "v": v})
    if counter == "lo":
        return frame.select(pl.col("v").cum_min().over("g"))["v"].to_numpy()
    if counter == "hi":
        return frame.select(pl.col("v").cum_max().over("g"))["v"].to_numpy()
    # Sketch words hold one bit each: OR-ing a prefix = summing each bit's first occurrence.
    first = np.zeros(len(v), dtype=bool)
    _, idx = np.unique(np.stack([start, v]), axis=1, return_index=True)
    first[idx] = True
    bits = np.where(first & (v != 0), v, 0).view(np.uint64)
    total = np.cumsum(bits, dtype=np.uint64)
    before = np.concatenate([[np.uint64(0)], total])[start]
    out: I64 = (total - before).view(np.int64)
    return out


def _fraud_counts(plan: Plan, labels: pl.DataFrame, code: I64, ts: I64, lo: int) -> dict[str, I64]:
    """Each ``f`` aggregate's fraud counts for processing rows ``lo`` onwards."""
    out: dict[str, I64] = {}
    for fam in plan.families:
        for agg in fam.aggregates:
            if "f" in agg.counters:
                out[agg.name] = _label_counts(fam, agg, labels, code, ts)[lo:].copy()
    return out


def _label_counts(fam: Family, agg: Aggregate, labels: pl.DataFrame, code: I64, ts: I64) -> I64:
    """Frauds counted by each transaction's window: a label counts from the later of its
    report and the first tile whose window holds its transaction's tile, until the end of
    the last such tile (and only if it was reported while its tile was still kept)."""
    n = len(ts)
    if labels.height == 0:
        return np.zeros(n, dtype=np.int64)
    lab = _label_codes(labels, fam)
    x = lab["tx_ts"].to_numpy() // fam.tile_us
    rep = lab["rep"].to_numpy()
    lcode = lab["code"].to_numpy()
    start = np.maximum(rep, (x + agg.lag) * fam.tile_us)
    end = (x + agg.lag + agg.tiles) * fam.tile_us
    keep = start < end
    ev_code = np.concatenate([lcode[keep], lcode[keep], code])
    ev_time = np.concatenate([start[keep], end[keep], ts])
    ev_kind = np.concatenate(
        [np.zeros(keep.sum(), np.int8), np.zeros(keep.sum(), np.int8), np.ones(n, np.int8)]
    )
    delta = np.concatenate(
        [np.ones(keep.sum(), np.int64), -np.ones(keep.sum(), np.int64), np.zeros(n, np.int64)]
    )
    order = np.lexsort((ev_kind, ev_time, ev_code))
    running = np.cumsum(delta[order])
    out = np.empty(len(order), dtype=np.int64)
    out[order] = running
    result = out[2 * keep.sum() :]
    return np.where(code >= 0, result, 0)


def _label_codes(labels: pl.DataFrame, fam: Family) -> pl.DataFrame:
    """Labels with the history's terminal codes; dropped when reported after the tile of
    their transaction left the family's ring (the online engine counts those as late)."""
    codes = labels.get_column("terminal_code") if "terminal_code" in labels.columns else None
    assert codes is not None
    tile_us = fam.tile_us
    accepted = (pl.col("tx_ts") // tile_us) >= (pl.col("rep") // tile_us) - fam.span + 1
    return labels.filter(accepted & (pl.col("terminal_code") >= 0)).rename(
        {"terminal_code": "code"}
    )


def _first_seen(
    plan: Plan, frame: pl.DataFrame, cust: I64
) -> tuple[dict[str, NDArray[np.bool_]], dict[str, NDArray[np.bool_]]]:
    """First-seen flags in processing order, through the online engine's own `replay`."""
    flags: dict[str, NDArray[np.bool_]] = {}
    present: dict[str, NDArray[np.bool_]] = {}
    customers = int(cust.max()) + 1 if len(cust) else 0
    for spec in plan.features.first_seen:
        column = frame[spec.field]
        uniq = column.drop_nulls().unique(maintain_order=True)
        code = column.replace_strict(
            uniq, pl.int_range(uniq.len(), eager=True), default=-1, return_dtype=pl.Int64
        ).to_numpy()
        has = code >= 0
        idx = np.flatnonzero(has)
        hashes = value_hashes(uniq.to_list())
        state = SeenState.empty(spec, customers)
        first = np.zeros(len(cust), dtype=bool)
        for lo in range(0, len(idx), SEEN_CHUNK):  # the Bloom positions of a chunk at a time
            at = idx[lo : lo + SEEN_CHUNK]
            first[at] = replay(spec, state, cust[at], hashes[code[at]], np.ones(len(at), bool))
        flags[spec.name], present[spec.name] = first, has
    return flags, present


def _new_place(
    plan: Plan,
    first_seen: dict[str, NDArray[np.bool_]],
    present: dict[str, NDArray[np.bool_]],
    n: int,
) -> NDArray[np.bool_]:
    """Each transaction at a terminal new to its customer (False: the set tracks none)."""
    seen = plan.features.seen_terminal
    if seen is None:
        return np.zeros(n, dtype=bool)
    new: NDArray[np.bool_] = first_seen[seen.name] & present[seen.name]
    return new


def _locations(
    frame: pl.DataFrame,
) -> tuple[NDArray[np.uint8], NDArray[np.float64], NDArray[np.float64]]:
    lat, lon = frame["lat"].to_numpy(), frame["lon"].to_numpy()
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()
    has_ll = ~np.isnan(lat) & ~np.isnan(lon)
    has_xy = ~np.isnan(x) & ~np.isnan(y) & ~has_ll
    sys = np.where(has_ll, LATLON, np.where(has_xy, GRID, 0)).astype(np.uint8)
    a = np.where(has_ll, lat, np.where(has_xy, x, np.nan))
    b = np.where(has_ll, lon, np.where(has_xy, y, np.nan))
    return sys, a, b


def _previous_located(located: NDArray[np.bool_], sorted_cust: I64) -> I64:
    """Per pool position: the pool index of the customer's latest *earlier* located
    transaction, -1 if none."""
    n = len(located)
    idx = np.where(located, np.arange(n), -1)
    latest = np.maximum.accumulate(idx) if n else idx
    prev = np.concatenate([[-1], latest[:-1]])
    start = np.searchsorted(sorted_cust, sorted_cust, side="left")
    return np.where(prev >= start, prev, -1)


def _known_fraud(plan: Plan, labels: pl.DataFrame, code: I64, ts: I64) -> tuple[I64, I64]:
    """Event time of the first and the last fraud known at this terminal at scoring time."""
    n = len(ts)
    none = np.full(n, NONE_TS, dtype=np.int64)
    if labels.height == 0 or "terminal_code" not in labels.columns:
        return none, none.copy()
    lab = (
        labels.filter(pl.col("terminal_code") >= 0)
        .sort("rep")
        .with_columns(
            pl.col("tx_ts").cum_min().over("terminal_code").alias("first"),
            pl.col("tx_ts").cum_max().over("terminal_code").alias("last"),
        )
    )
    query = pl.DataFrame({"terminal_code": code, "ts": ts, "_i": np.arange(n)}).sort("ts")
    joined = query.join_asof(
        lab.select("terminal_code", pl.col("rep").alias("ts"), "first", "last"),
        on="ts",
        by="terminal_code",
        strategy="backward",
        check_sortedness=False,
    ).sort("_i")
    first = joined["first"].fill_null(NONE_TS).to_numpy()
    last = joined["last"].fill_null(NONE_TS).to_numpy()
    return first, last
