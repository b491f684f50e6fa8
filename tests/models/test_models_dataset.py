from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from fraudstream.models import Protocol, build_dataset, labels_for, load_history, split
from fraudstream.simulate import SimulationConfig, simulate


def test_handbook_csv_becomes_our_schema(tmp_path: Path) -> None:
    result = simulate(SimulationConfig(n_customers=20, n_terminals=40, n_days=3))
    path = tmp_path / "hb.csv"
    result.handbook_transactions.write_csv(path, datetime_format="%Y-%m-%d %H:%M:%S")
    frame = load_history(path)
    assert {
        "transaction_id",
        "timestamp",
        "customer_id",
        "terminal_id",
        "amount",
        "is_fraud",
    } <= set(frame.columns)
    assert frame.schema["timestamp"] == pl.Datetime("us", "UTC")
    assert frame.schema["customer_id"] == pl.String and frame["merchant_id"].null_count() == 0
    assert frame["timestamp"].to_list() == result.transactions["timestamp"].to_list()
    assert frame["is_fraud"].to_list() == result.transactions["is_fraud"].to_list()


def test_labels_from_tx_fraud_arrive_after_the_delay() -> None:
    t0 = datetime(2018, 4, 1, 12, tzinfo=UTC)
    history = pl.DataFrame(
        {
            "transaction_id": ["1", "2"],
            "timestamp": [t0, t0],
            "customer_id": ["c", "d"],
            "terminal_id": ["t", "t"],
            "is_fraud": [True, False],
        }
    )
    labels = labels_for(history, None, label_delay_days=7)
    assert labels["transaction_id"].to_list() == ["1"]
    assert labels["reported_at"][0] == t0 + timedelta(days=7)


def _tx(rows: list[tuple[str, date, str, bool]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "transaction_id": [r[0] for r in rows],
            "timestamp": [
                datetime.combine(r[1], datetime.min.time(), UTC) + timedelta(hours=12) for r in rows
            ],
            "customer_id": [r[2] for r in rows],
            "terminal_id": ["t1"] * len(rows),
            "amount": [10.0] * len(rows),
            "is_fraud": [r[3] for r in rows],
        }
    )


def test_hygiene_removes_customers_known_compromised_day_by_day() -> None:
    d = date(2018, 7, 1)
    p = Protocol.ending(d + timedelta(days=6), train_days=7, delay_days=2, test_days=3)
    # test days: d+9, d+10, d+11; known on day t: frauds dated before t - 2 days.
    rows = [
        ("a0", d + timedelta(days=3), "A", True),  # known from the training week
        ("b0", d + timedelta(days=7), "B", True),  # delay day: known from test day 2 on
        ("c0", d + timedelta(days=1), "C", False),
    ]
    for i, day in enumerate((9, 10, 11)):
        for cust in "ABC":
            rows.append((f"{cust}{day}", d + timedelta(days=day), cust, cust == "C" and i == 0))
    history = _tx(rows)
    ds = build_dataset(history, labels_for(history, None, label_delay_days=1))
    parts = split(ds, p)
    kept = sorted(parts.test["transaction_id"].to_list())
    assert kept == ["B9", "C10", "C11", "C9"]
    assert parts.removed_known == 5
    assert parts.test.filter(pl.col("transaction_id") == "C9")["y"].item() is True
    assert parts.train["y"].sum() == 1  # a0 (b0 is in the delay period, not training)
    assert np.isfinite(ds.matrix(parts.test)).any()


def test_train_and_evaluate_build_the_neighbourhood_of_the_30_days_before_training() -> None:
    from fraudstream.features import default_feature_set
    from fraudstream.models.dataset import neighbourhood_for

    protocol = Protocol.ending(date(2018, 7, 31), train_days=7)
    first = datetime.combine(protocol.train_start, datetime.min.time(), UTC)
    visits = [  # (id, when, customer, terminal, fraud)
        ("old", first - timedelta(days=30, seconds=1), "a", "T-old", False),
        ("in", first - timedelta(days=30), "a", "T-in", False),
        ("known", first - timedelta(days=8), "b", "T-known", True),  # reported day -1
        ("unknown", first - timedelta(days=6), "c", "T-unknown", True),  # reported after
        ("train", first, "a", "T-train", False),
    ]
    history = pl.DataFrame(
        [v[:4] + (10.0, v[4]) for v in visits],
        schema=["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "is_fraud"],
        orient="row",
    )
    hood = neighbourhood_for(history, labels_for(history, None), protocol, default_feature_set())
    assert hood is not None and hood.end == first
    assert hood.terminals == ["T-in", "T-unknown"] and hood.customers == ["a", "c"]
