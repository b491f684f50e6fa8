"""History out of the store: decisions joined with their transactions and labels, as Parquet.

The rows are read in chunks through SQLAlchemy Core and written chunk by chunk
(`pyarrow.parquet.ParquetWriter`), so an export of months of history needs the memory of one
chunk, not of the whole file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from fraudstream.store.tables import challenges, decisions, labels, transactions

CHUNK_ROWS = 100_000
SCHEMA: dict[str, Any] = {
    "transaction_id": pl.String,
    "decided_at": pl.Datetime("us", "UTC"),
    "score": pl.Int16,
    "outcome": pl.String,
    "final_outcome": pl.String,
    "reasons": pl.List(pl.String),
    "model_version": pl.String,
    "rules_version": pl.String,
    "latency_ms": pl.Float64,
    "timestamp": pl.Datetime("us", "UTC"),
    "customer_id": pl.String,
    "terminal_id": pl.String,
    "merchant_id": pl.String,
    "amount": pl.Float64,
    "currency": pl.String,
    "channel": pl.String,
    "is_fraud": pl.Boolean,
}
"""One row per decision; the transaction's fields are null until the store holds them, the
label null until a verdict (any source: fraud if any source says so) arrived.
``final_outcome`` is what the payment ended as: the outcome, or for a step-up the outcome its
challenge closed with (``step_up`` while it is open)."""


def history_query(start: datetime | None, end: datetime | None) -> sa.Select[Any]:
    """Decisions in ``[start, end)`` (by decision time), oldest first."""
    verdict = (
        sa.select(
            labels.c.transaction_id,
            sa.func.max(sa.cast(labels.c.is_fraud, sa.Integer)).label("fraud"),
        )
        .group_by(labels.c.transaction_id)
        .subquery("verdict")
    )
    tx = transactions.c
    query = (
        sa.select(
            decisions.c.transaction_id,
            decisions.c.decided_at,
            decisions.c.score,
            decisions.c.outcome,
            sa.func.coalesce(challenges.c.final_outcome, decisions.c.outcome).label(
                "final_outcome"
            ),
            decisions.c.reasons,
            decisions.c.model_version,
            decisions.c.rules_version,
            decisions.c.latency_ms,
            tx.timestamp,
            tx.customer_id,
            tx.terminal_id,
            tx.merchant_id,
            tx.amount,
            tx.currency,
            tx.channel,
            verdict.c.fraud.label("is_fraud"),
        )
        .outerjoin(transactions, tx.transaction_id == decisions.c.transaction_id)
        .outerjoin(verdict, verdict.c.transaction_id == decisions.c.transaction_id)
        .outerjoin(challenges, challenges.c.transaction_id == decisions.c.transaction_id)
        .order_by(decisions.c.decided_at, decisions.c.transaction_id)
    )
    if start is not None:
        query = query.where(decisions.c.decided_at >= start)
    if end is not None:
        query = query.where(decisions.c.decided_at < end)
    return query


def export_history(
    engine: sa.Engine, out: Path, *, start: datetime | None = None, end: datetime | None = None
) -> int:
    """Write the history between ``start`` and ``end`` to ``out`` (Parquet); returns the rows.

    An empty range still writes a file, with the columns and no rows."""
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    names = list(SCHEMA)
    total = 0
    writer = pq.ParquetWriter(str(out), pl.DataFrame(schema=SCHEMA).to_arrow().schema)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True).execute(
                history_query(_utc(start), _utc(end))
            )
            while chunk := result.fetchmany(CHUNK_ROWS):
                frame = _frame([dict(zip(names, row, strict=True)) for row in chunk])
                writer.write_table(frame.to_arrow())
                total += frame.height
    finally:
        writer.close()
    return total


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    for row in rows:  # SQLite hands times back naive (they are stored in UTC)
        for key in ("decided_at", "timestamp"):
            if row[key] is not None and row[key].tzinfo is None:
                row[key] = row[key].replace(tzinfo=UTC)
        if row["is_fraud"] is not None:
            row["is_fraud"] = bool(row["is_fraud"])
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
