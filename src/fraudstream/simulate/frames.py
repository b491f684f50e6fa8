"""From simulation arrays to the polars frames we write and stream.

Strings are made here and only here, column at a time with polars expressions (ids as
``str(int)`` so they map one to one onto the Handbook's integer ids, IPs as dotted quads,
emails from a user part and a domain). Optional columns are typed nulls in the ``handbook``
profile, so both profiles share one schema.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pyarrow as pa

from fraudstream.simulate.arrays import SECONDS_PER_DAY, FloatArray, IntArray, TxArrays
from fraudstream.simulate.catalog import (
    CATEGORY_MCC,
    CATEGORY_NAMES,
    EMAIL_DOMAINS,
    SUBCATEGORY_NAMES,
    THROWAWAY_DOMAINS,
)
from fraudstream.simulate.identities import Identities
from fraudstream.simulate.profiles import Customers, Terminals

GROUND_TRUTH = ("is_fraud", "fraud_scenario")
TRANSACTION_COLUMNS = (
    "transaction_id", "timestamp", "customer_id", "terminal_id", "merchant_id", "amount",
    "currency", "channel", "card_id", "mcc", "product_category", "product_subcategory", "ip",
    "device_id", "email", "x", "y", *GROUND_TRUTH,
)  # fmt: skip
HANDBOOK_TRANSACTION_COLUMNS = (
    "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT",
    "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD", "TX_FRAUD_SCENARIO",
)  # fmt: skip


def epoch_us(start: date) -> int:
    """Microseconds since the epoch of midnight UTC on ``start`` (day 0 of the simulation)."""
    return int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) * 1_000_000


def _id(column: str) -> pl.Expr:
    """``str(id)``, null where the code is -1."""
    return pl.when(pl.col(column) >= 0).then(pl.col(column).cast(pl.String))


def _lookup(column: str, table: tuple[str, ...]) -> pl.Expr:
    """The name at each index of ``table``, null where the code is -1."""
    index = pl.when(pl.col(column) >= 0).then(pl.col(column))
    return pl.lit(pl.Series(table, dtype=pl.String)).gather(index)


def _ip(column: str) -> pl.Expr:
    octets = [(pl.col(column) // (1 << shift) % 256).cast(pl.String) for shift in (24, 16, 8, 0)]
    return pl.when(pl.col(column) >= 0).then(pl.concat_str(octets, separator="."))


def _email(n_customers: int) -> pl.Expr:
    """Customers are ``user<id>@<their domain>``; fraudsters ``anon<k>@<throwaway domain>``."""
    code = pl.col("email")
    fraudster = code - n_customers
    return (
        pl.when(code < 0)
        .then(None)
        .when(code < n_customers)
        .then(pl.concat_str(pl.lit("user"), code.cast(pl.String), pl.lit("@"), pl.col("_domain")))
        .otherwise(
            pl.concat_str(
                pl.lit("anon"),
                fraudster.cast(pl.String),
                pl.lit("@"),
                pl.lit(pl.Series(THROWAWAY_DOMAINS)).gather(fraudster % len(THROWAWAY_DOMAINS)),
            )
        )
    )


def transactions_frame(
    tx: TxArrays, start: date, n_customers: int, ids: Identities | None
) -> pl.DataFrame:
    """Our transaction schema plus ground truth, one row per transaction, ids in time order."""
    customer_email = np.clip(tx.email, 0, n_customers - 1)
    domain = ids.email_domain[customer_email] if ids is not None else np.zeros(len(tx), np.int64)
    raw = pl.DataFrame(
        {
            "seconds": tx.seconds, "customer": tx.customer, "terminal": tx.terminal,
            "amount": tx.amount, "channel": tx.channel, "card": tx.card, "device": tx.device,
            "ip": tx.ip, "email": tx.email, "category": tx.category, "sub": tx.subcategory,
            "x": tx.x, "y": tx.y, "is_fraud": tx.is_fraud, "fraud_scenario": tx.scenario,
            "_domain": pl.Series(EMAIL_DOMAINS).gather(domain),
        }
    )  # fmt: skip
    timestamp = pl.lit(epoch_us(start)) + pl.col("seconds") * 1_000_000
    return raw.select(
        pl.int_range(pl.len(), dtype=pl.Int64).cast(pl.String).alias("transaction_id"),
        timestamp.cast(pl.Datetime("us", "UTC")).alias("timestamp"),
        pl.col("customer").cast(pl.String).alias("customer_id"),
        pl.col("terminal").cast(pl.String).alias("terminal_id"),
        pl.col("terminal").cast(pl.String).alias("merchant_id"),
        pl.col("amount"),
        pl.lit("EUR").alias("currency"),
        pl.when(pl.col("channel") == 1)
        .then(pl.lit("ecommerce"))
        .otherwise(pl.lit("card_present"))
        .alias("channel"),
        _id("card").alias("card_id"),
        _lookup("category", CATEGORY_MCC).alias("mcc"),
        _lookup("category", CATEGORY_NAMES).alias("product_category"),
        _lookup("sub", SUBCATEGORY_NAMES).alias("product_subcategory"),
        _ip("ip").alias("ip"),
        _id("device").alias("device_id"),
        _email(n_customers).alias("email"),
        pl.col("x"),
        pl.col("y"),
        pl.col("is_fraud"),
        pl.col("fraud_scenario").cast(pl.Int8),
    )


def handbook_frame(transactions: pl.DataFrame, start: date) -> pl.DataFrame:
    """The same transactions with the Handbook's columns: integer ids, naive datetimes."""
    day0 = datetime(start.year, start.month, start.day, tzinfo=UTC)
    seconds = (pl.col("timestamp") - pl.lit(day0)).dt.total_seconds()
    return transactions.select(
        pl.col("transaction_id").cast(pl.Int64).alias("TRANSACTION_ID"),
        pl.col("timestamp").dt.replace_time_zone(None).alias("TX_DATETIME"),
        pl.col("customer_id").cast(pl.Int64).alias("CUSTOMER_ID"),
        pl.col("terminal_id").cast(pl.Int64).alias("TERMINAL_ID"),
        pl.col("amount").alias("TX_AMOUNT"),
        seconds.cast(pl.Int64).alias("TX_TIME_SECONDS"),
        (seconds // SECONDS_PER_DAY).cast(pl.Int64).alias("TX_TIME_DAYS"),
        pl.col("is_fraud").cast(pl.Int8).alias("TX_FRAUD"),
        pl.col("fraud_scenario").cast(pl.Int8).alias("TX_FRAUD_SCENARIO"),
    )


def labels_frame(transactions: pl.DataFrame, delays: FloatArray) -> pl.DataFrame:
    """One chargeback `Label` per fraud, in the order they are reported."""
    frauds = transactions.filter(pl.col("is_fraud"))
    delay = pl.Series(np.round(delays * 1_000_000).astype(np.int64)).cast(pl.Duration("us"))
    return frauds.select(
        pl.col("transaction_id"),
        pl.lit(True).alias("is_fraud"),
        (pl.col("timestamp") + pl.lit(delay)).alias("reported_at"),
        pl.lit("chargeback").alias("source"),
        pl.col("customer_id"),
        pl.col("terminal_id"),
        pl.col("timestamp").alias("tx_timestamp"),
        pl.col("fraud_scenario"),
    ).sort("reported_at", maintain_order=True)


def ragged(offsets: IntArray, values: pl.Series) -> pl.Series:
    """A list column from compressed rows: row ``i`` holds ``values[offsets[i]:offsets[i+1]]``."""
    array = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values.to_arrow())
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def _str_ids(values: IntArray) -> pl.Series:
    return pl.Series(values, dtype=pl.Int64).cast(pl.String)


SEGMENT_BOUNDS = np.array([35.0, 70.0])
"""``segment`` by usual amount (the Handbook draws it from 5-100): 0 everyday (< 35),
1 standard (< 70), 2 high spender."""


def customers_frame(customers: Customers, ids: Identities | None) -> pl.DataFrame:
    """Customer profiles with the Handbook's fields, a ``segment`` (`SEGMENT_BOUNDS`), and
    the ``full`` profile's identities (the first of ``card_ids`` is the preferred card)."""
    n = len(customers)
    frame = pl.DataFrame(
        {
            "customer_id": _str_ids(np.arange(n)),
            "x": customers.x,
            "y": customers.y,
            "mean_amount": customers.mean_amount,
            "segment": np.searchsorted(SEGMENT_BOUNDS, customers.mean_amount, side="right"),
            "std_amount": customers.std_amount,
            "mean_nb_tx_per_day": customers.mean_nb_tx_per_day,
            "nb_terminals": customers.nb_terminals,
            "available_terminals": ragged(customers.offsets, _str_ids(customers.available)),
        }
    )
    frame = frame.with_columns(_contact(n))
    if ids is None:
        return frame
    habit_offsets = np.concatenate([[0], np.cumsum(ids.n_habits)]).astype(np.int64)
    used = np.arange(ids.habits.shape[1])[None, :] < ids.n_habits[:, None]
    codes = pl.DataFrame(
        {
            "email": np.arange(n),
            "_domain": pl.Series(EMAIL_DOMAINS).gather(ids.email_domain),
            "ip": ids.home_ip,
        }
    )
    identity = codes.select(_email(n).alias("email"), _ip("ip").alias("home_ip")).with_columns(
        card_ids=ragged(ids.card_offsets, _str_ids(np.arange(ids.card_offsets[-1]))),
        device_ids=ragged(ids.device_offsets, _str_ids(np.arange(ids.n_devices))),
        habitual_categories=ragged(
            habit_offsets, pl.Series(CATEGORY_NAMES).gather(ids.habits[used])
        ),
    )
    return pl.concat([frame, identity], how="horizontal")


FIRST_NAMES = ("Alex", "Sam", "Maria", "Jon", "Aisha", "Chen", "Lucia", "Omar", "Ines", "Kofi")
LAST_NAMES = ("Smith", "Garcia", "Müller", "Rossi", "Dubois", "Khan", "Novak", "Silva", "Berg")


def _contact(n: int) -> list[pl.Series]:
    """A made-up name and a phone number from the range reserved for drama (+44 7700 900xxx,
    never a real subscriber), by id: who an alert or a review is about."""
    code = np.arange(n)
    first = pl.Series(FIRST_NAMES).gather(code % len(FIRST_NAMES))
    last = pl.Series(LAST_NAMES).gather((code // len(FIRST_NAMES)) % len(LAST_NAMES))
    name = first + " " + last
    phone = pl.Series([f"+44 7700 900{c % 1000:03d}" for c in code.tolist()])
    return [name.alias("name"), phone.alias("phone")]


def terminals_frame(terminals: Terminals, ids: Identities | None) -> pl.DataFrame:
    """Terminals (and, in the ``full`` profile, e-commerce merchants as virtual terminals)."""
    n = len(terminals)
    m = 0 if ids is None else len(ids.merchant_category)
    frame = pl.DataFrame(
        {
            "terminal_id": _str_ids(np.arange(n + m)),
            "kind": ["terminal"] * n + ["ecommerce_merchant"] * m,
            "x": pl.Series(terminals.x).extend(pl.Series([None] * m, dtype=pl.Float64)),
            "y": pl.Series(terminals.y).extend(pl.Series([None] * m, dtype=pl.Float64)),
        }
    )
    if ids is None:
        return frame
    category = np.concatenate([ids.terminal_category, ids.merchant_category])
    return frame.with_columns(category=category).with_columns(
        _lookup("category", CATEGORY_MCC).alias("mcc"),
        _lookup("category", CATEGORY_NAMES).alias("category"),
    )
