"""Transactions for the feature-engine tests: one customer at a fixed place and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import polars as pl

from fraudstream.schema import Transaction

TX_FIELDS = set(Transaction.__struct_fields__)
T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
FIXED_CLOCK = T0.timestamp() + 400 * 86400


def tx(i: int, *, minutes: float = 0, customer: str = "c1", **kw: Any) -> Transaction:
    fields: dict[str, Any] = {
        "transaction_id": f"t{i}",
        "timestamp": T0 + timedelta(minutes=minutes),
        "customer_id": customer,
        "terminal_id": kw.pop("terminal_id", "T1"),
        "merchant_id": "M1",
        "amount": kw.pop("amount", 10.0 + i),
        "currency": "EUR",
        "channel": "card_present",
        "card_id": "K1",
        "x": 10.0,
        "y": 20.0,
    }
    fields.update(kw)
    return Transaction(**fields)


def transactions(frame: pl.DataFrame) -> list[Transaction]:
    """The rows of a history (`synthetic_history`, the simulator) as transactions."""
    cols = [c for c in frame.columns if c in TX_FIELDS]
    out = []
    for row in frame.select(cols).iter_rows(named=True):
        out.append(Transaction(**{k: v for k, v in row.items() if v is not None}))
    return out


def unchecked(t: Transaction, amount: float) -> Transaction:
    """``t`` with an amount the schema refuses, set past its checks: what a bug upstream
    could hand the engine."""
    msgspec.structs.force_setattr(t, "amount", amount)
    return t


def frame_of(txs: list[Transaction]) -> pl.DataFrame:
    """Transactions as a history for `backfill` (the columns some of them fill)."""
    rows = pl.DataFrame([{f: getattr(t, f) for f in Transaction.__struct_fields__} for t in txs])
    return rows.select(c for c in rows.columns if rows[c].null_count() < rows.height)
