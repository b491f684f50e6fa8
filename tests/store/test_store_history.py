"""The store read back as a history (`read_store_history`): what `train`, `evaluate`,
`retrain` and `rules backtest --database` learn from."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import sqlalchemy as sa

from fraudstream.schema import Label
from fraudstream.store import migrate
from fraudstream.store.history import read_store_history
from fraudstream.store.write import store_labels, store_transactions
from storekit import T0, make_transaction


def test_optional_fields_first_filled_late_in_the_table_are_read(engine: sa.Engine) -> None:
    """Card-present payments carry no e-mail, IP or device; an e-commerce one that comes after
    hundreds of them does. The reader must not guess a column's type from its first rows
    (it did: a traceback from `retrain` as soon as one API payment with an e-mail was
    stored after the replayed history)."""
    migrate.upgrade(engine)
    plain = [
        msgspec.structs.replace(
            make_transaction(f"tx-{i}", f"c{i % 7}", f"t{i % 5}"),
            timestamp=T0 + timedelta(minutes=i),
        )
        for i in range(300)
    ]
    late = msgspec.structs.replace(
        make_transaction("tx-web", "c1", "t1"),
        timestamp=T0 + timedelta(days=1),
        email="buyer@example.com",
        ip="203.0.113.7",
        device_id="dev-1",
        mcc="5732",
        product_category="electronics",
        lat=48.85,
        lon=2.35,
    )
    labels = [
        Label(transaction_id=f"tx-{i}", is_fraud=False, reported_at=T0 + timedelta(days=2))
        for i in range(200)
    ] + [
        Label(
            transaction_id="tx-web",
            is_fraud=True,
            reported_at=T0 + timedelta(days=3),
            customer_id="c1",
            terminal_id="t1",
            tx_timestamp=late.timestamp,
        )
    ]
    with engine.begin() as connection:
        store_transactions(connection, [*plain, late])
        store_labels(connection, labels)
    history, frauds = read_store_history(engine)
    assert history.height == 301
    row = history.filter(history["transaction_id"] == "tx-web").row(0, named=True)
    assert (row["email"], row["ip"], row["device_id"], row["mcc"]) == (
        "buyer@example.com",
        "203.0.113.7",
        "dev-1",
        "5732",
    )
    assert (row["lat"], row["lon"], row["is_fraud"]) == (48.85, 2.35, True)
    assert frauds.rows() == [("tx-web", True, T0 + timedelta(days=3), "c1", "t1", late.timestamp)]
