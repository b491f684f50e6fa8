"""The store as a history source: its transactions and labels in the columns every command
that reads a file gets (`fraudstream.history`), so `train`, `evaluate` and `rules backtest`
learn from what production decided and analysts and chargebacks said.

A transaction's ``is_fraud`` is True when any label source says fraud (a chargeback and a
reviewer may both speak); the labels frame keeps, per transaction, the first report that
said so, which is when the fraud became known (the time-based protocol needs it). Rows are
read in chunks (`CHUNK_ROWS`) so the driver never holds the table twice.
"""

from __future__ import annotations

from typing import Any

import polars as pl
import sqlalchemy as sa

from fraudstream.errors import StoreError
from fraudstream.store import migrate
from fraudstream.store.engine import describe, first_line
from fraudstream.store.tables import labels, transactions

CHUNK_ROWS = 200_000
TIMES = ("timestamp", "reported_at", "tx_timestamp")
UTC_US = pl.Datetime("us", "UTC")


def read_store_history(engine: sa.Engine) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``(history, labels)`` from the store.

    Raises:
        StoreError: the database is unreachable, has no fraudstream schema, or holds no
            transaction (naming it).
    """
    try:
        return _read_all(engine)
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"{describe(engine)}: {first_line(exc)}") from None


def _read_all(engine: sa.Engine) -> tuple[pl.DataFrame, pl.DataFrame]:
    if migrate.current(engine) is None:
        raise StoreError(
            f"{describe(engine)}: not a fraudstream store (no schema: run `fraudstream sink` "
            "or `fraudstream db upgrade`, or check the URL)"
        )
    with engine.connect() as connection:
        history = _read(connection, sa.select(transactions).order_by(transactions.c.timestamp))
        said = _read(
            connection,
            sa.select(
                labels.c.transaction_id,
                labels.c.is_fraud,
                labels.c.reported_at,
                labels.c.customer_id,
                labels.c.terminal_id,
                labels.c.tx_timestamp,
            ).order_by(labels.c.reported_at),
        )
    if history.height == 0:
        raise StoreError(f"{describe(engine)}: no transactions stored yet (run `fraudstream sink`)")
    frauds = said.filter(pl.col("is_fraud")).unique("transaction_id", keep="first")
    history = history.join(
        frauds.select("transaction_id", pl.lit(True).alias("is_fraud")),
        on="transaction_id",
        how="left",
        maintain_order="left",
    ).with_columns(pl.col("is_fraud").fill_null(False))
    return history, frauds


def _read(connection: sa.Connection, query: sa.Select[Any]) -> pl.DataFrame:
    schema = _schema(query)
    chunks = list(
        pl.read_database(
            query, connection, iter_batches=True, batch_size=CHUNK_ROWS, schema_overrides=schema
        )
    )
    if not chunks or sum(c.height for c in chunks) == 0:
        return pl.DataFrame(schema=schema)
    frame = pl.concat(chunks, how="vertical_relaxed")
    return frame.with_columns(
        _utc(pl.col(name), frame.schema[name]) for name in TIMES if name in frame.columns
    )


def _schema(query: sa.Select[Any]) -> dict[str, Any]:
    """Each column's type from the table's declaration, never guessed from the first rows: an
    optional field (an e-mail, a device) may be empty for hundreds of thousands of rows
    before the first payment that carries it."""
    return {c.name: _polars_type(c.type) for c in query.selected_columns}


def _polars_type(kind: sa.types.TypeEngine[Any]) -> Any:
    if isinstance(kind, sa.DateTime):
        return UTC_US  # naive (SQLite) is UTC; aware (PostgreSQL) is converted
    if isinstance(kind, sa.Boolean):
        return pl.Boolean
    if isinstance(kind, sa.Integer):
        return pl.Int64
    if isinstance(kind, sa.Float):
        return pl.Float64
    return pl.String


def _utc(column: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """SQLite hands back naive UTC times, PostgreSQL aware ones: UTC either way."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return column.dt.convert_time_zone("UTC")
    if isinstance(dtype, pl.Datetime):
        return column.dt.replace_time_zone("UTC")
    return column.str.to_datetime(time_zone="UTC") if dtype == pl.String else column
