"""The backfill against a naive, loop-by-loop reading of the definitions.

Parity (online = offline) cannot catch a misreading both paths share; this can. It spells out
the documented semantics in plain Python over a small history: tiled windows ending with the
transaction's tile (it and everything before it), the Handbook's delayed terminal windows
counting only labels reported by scoring time, the bounded previous-history robust amounts.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest

from fraudstream.features import backfill
from fraudstream.features.sample import synthetic_history

DAY, HOUR = 86_400, 3_600
Row = dict[str, Any]
Data = tuple[list[Row], list[Row], pl.DataFrame]


def _secs(stamp: datetime) -> float:
    return stamp.timestamp()


@pytest.fixture(scope="module")
def data() -> Data:
    history, labels = synthetic_history(n_customers=60, n_terminals=30, n_days=24, seed=3)
    history = history.sort("timestamp", maintain_order=True)
    features = backfill(history, labels)
    return list(history.iter_rows(named=True)), list(labels.iter_rows(named=True)), features


def _tile(row: Row, size: int) -> int:
    stamp = row["timestamp"]
    assert isinstance(stamp, datetime)
    return int(_secs(stamp) // size)


def _window(rows: list[Row], i: int, entity: str, size: int, lo: int, hi: int) -> list[Row]:
    me = rows[i]
    return [
        r
        for r in rows[: i + 1]
        if r[entity] is not None and r[entity] == me[entity] and lo <= _tile(r, size) <= hi
    ]


def test_tiled_windows(data: Data) -> None:
    rows, _, features = data
    for i in range(0, len(rows), 7):
        d, h = _tile(rows[i], DAY), _tile(rows[i], HOUR)
        week = _window(rows, i, "customer_id", DAY, d - 6, d)
        assert features["customer_tx_count_7d"][i] == len(week)
        mean = sum(round(float(r["amount"]) * 100) for r in week) / len(week) / 100
        assert features["customer_amount_mean_7d"][i] == pytest.approx(mean, rel=1e-12)
        hour = _window(rows, i, "card_id", HOUR, h, h)
        assert features["card_tx_count_1h"][i] == len(hour)
        day24 = _window(rows, i, "customer_id", HOUR, h - 23, h)
        assert features["customer_tx_count_24h"][i] == len(day24)
        if rows[i]["device_id"] is None:
            assert np.isnan(features["device_tx_count_24h"][i])


def test_zero_amount_counts_follow_their_definition() -> None:
    """Zero-amount authorisations (card testing) counted per customer, card and device over
    the short windows, straight from the definition, on a history with bursts of 0.00."""
    history, labels = synthetic_history(n_customers=40, n_terminals=30, n_days=4, seed=8)
    history = history.sort("timestamp", maintain_order=True)
    zero = np.random.default_rng(8).random(history.height) < 0.2
    history = history.with_columns(
        pl.Series("amount", np.where(zero, 0.0, history["amount"].to_numpy()))
    )
    features = backfill(history, labels)
    rows = list(history.iter_rows(named=True))
    checked = 0
    for i in range(len(rows)):
        h = _tile(rows[i], HOUR)
        for entity, column in (
            ("customer", "customer_id"),
            ("card", "card_id"),
            ("device", "device_id"),
        ):
            for name, lo in (("1h", h), ("24h", h - 23)):
                got = features[f"{entity}_tx_count_{name}_zero_amount"][i]
                if rows[i][column] is None:
                    assert np.isnan(got)
                    continue
                window = _window(rows, i, column, HOUR, lo, h)
                want = sum(1 for r in window if r["amount"] == 0.0)
                assert got == want, (i, entity, name)
                checked += want > 0
    assert checked > 50


def test_delayed_terminal_risk(data: Data) -> None:
    rows, labels, features = data
    first_label: dict[str, Row] = {}
    for lab in sorted(labels, key=lambda r: r["reported_at"]):
        if lab["is_fraud"]:
            first_label.setdefault(lab["transaction_id"], lab)
    seen = 0
    for i in range(len(rows)):
        me = rows[i]
        t = me["timestamp"]
        d = _tile(me, DAY)
        window = _window(rows, i, "terminal_id", DAY, d - 14, d - 8)
        frauds = 0
        for r in window:
            known_label = first_label.get(r["transaction_id"])
            if known_label is not None and known_label["reported_at"] <= t:
                frauds += 1
        risk = frauds / len(window) if window else 0.0
        assert features["terminal_tx_count_7d_delay7d"][i] == len(window)
        assert features["terminal_risk_7d_delay7d"][i] == pytest.approx(risk, rel=1e-12)
        seen += frauds > 0
        known = [
            _secs(lab["tx_timestamp"])
            for lab in first_label.values()
            if lab["terminal_id"] == me["terminal_id"] and lab["reported_at"] <= t
        ]
        expected = (_secs(t) - max(known)) / DAY if known else np.nan
        got = features["terminal_days_since_last_fraud"][i]
        assert got == pytest.approx(expected, rel=1e-9, nan_ok=True)
    assert seen > 0


def test_previous_history(data: Data) -> None:
    rows, _, features = data
    for i in range(0, len(rows), 5):
        me = rows[i]
        t = _secs(me["timestamp"])
        prev = [r for r in rows[:i] if r["customer_id"] == me["customer_id"]][-64:]
        if not prev:
            assert np.isnan(features["customer_seconds_since_last_tx"][i])
            continue
        assert features["customer_seconds_since_last_tx"][i] == pytest.approx(
            t - _secs(prev[-1]["timestamp"]), abs=1e-6
        )
        recent = [
            round(float(r["amount"]) * 100) for r in prev if _secs(r["timestamp"]) >= t - 30 * DAY
        ]
        ratio = float(me["amount"]) / (statistics.median(recent) / 100)
        assert features["customer_amount_ratio_median_prev_30d"][i] == pytest.approx(
            ratio, rel=1e-12
        )
        top = float(me["amount"]) / (max(recent) / 100)
        assert features["customer_amount_ratio_max_prev_30d"][i] == pytest.approx(top, rel=1e-12)


def test_since_gives_the_same_rows_as_the_whole_backfill_cut_afterwards() -> None:
    """Training asks only for its window; the rows it gets must be the whole backfill's,
    bit for bit (the earlier history still counts in every window), even when the input
    is out of time order and repeats an id."""
    history, labels = synthetic_history(n_customers=40, n_terminals=20, n_days=12, seed=5)
    shuffled = history.sample(fraction=1.0, shuffle=True, seed=1)
    shuffled = pl.concat([shuffled, shuffled.head(3)])
    cut = datetime(2024, 3, 7, tzinfo=UTC)
    whole = backfill(shuffled, labels)
    part = backfill(shuffled, labels, since=cut)
    at = shuffled.unique("transaction_id", keep="first", maintain_order=True).select(
        "transaction_id", "timestamp"
    )
    expected = whole.join(at, on="transaction_id").filter(pl.col("timestamp") >= cut)
    assert 0 < part.height < whole.height
    assert part.height == expected.height
    got = part.join(expected.select("transaction_id"), on="transaction_id", how="semi")
    assert got.height == part.height
    cols = [c for c in whole.columns if c != "transaction_id"]
    a = expected.sort("transaction_id").select(cols).to_numpy()
    b = part.sort("transaction_id").select(cols).to_numpy()
    np.testing.assert_array_equal(a, b)
