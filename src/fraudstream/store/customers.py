"""Who a transaction's customer is (name, e-mail, phone, segment), for alerts and reviews.

Loaded from a file (the simulator's ``customers.parquet``, or a bank's export mapped to these
columns) with an upsert: loading a newer file updates what changed and adds the rest, so it
can be re-run whenever the customer base changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fraudstream.errors import SchemaError
from fraudstream.store.tables import customers

FIELDS = ("name", "email", "phone", "segment")
CHUNK_ROWS = 5_000


def customer_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The frame's customers as table rows (absent columns are NULL; ids and segments as text).

    Raises:
        SchemaError: no ``customer_id`` column, or a row without one (naming the row).
    """
    if "customer_id" not in frame.columns:
        raise SchemaError("customer_id", "required column is missing")
    missing = frame["customer_id"].is_null().arg_true()
    if len(missing):
        raise SchemaError("customer_id", f"row {int(missing[0]) + 1} has no value")
    present = [f for f in FIELDS if f in frame.columns]
    rows = frame.select(
        pl.col("customer_id").cast(pl.String),
        *(pl.col(f).cast(pl.String) for f in present),
        *(pl.lit(None, pl.String).alias(f) for f in FIELDS if f not in present),
    )
    return rows.to_dicts()


def upsert_customers(connection: sa.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update each customer, in the caller's transaction; returns the rows sent."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start : start + CHUNK_ROWS]
        statement = dialect.insert(customers)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[customers.c.customer_id],
                set_={f: statement.excluded[f] for f in FIELDS},
            ),
            list(chunk),
        )
    return len(rows)
