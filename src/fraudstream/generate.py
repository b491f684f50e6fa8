"""`fraudstream generate`: simulated traffic into the input stream, paced, measured.

Rows come from a simulated history (a ``transactions.parquet`` written by
``fraudstream simulate``, or a small world simulated on the spot), optionally re-mixed to a
chosen fraud ratio, renamed with the run id (so runs never collide), and sent by the `Pacer`
at a rate and traffic pattern, unthrottled, or replaying event time compressed by a speedup.
Event time stays the history's own: features see the history's clock, not the wall clock.
With ``labels`` the chargebacks of the sent frauds follow on ``{prefix}.labels``, in event
time order with the transactions (a label is sent once its report time is reached).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from fraudstream.errors import ConfigError
from fraudstream.history import History, ReadOptions, read_history, read_labels
from fraudstream.simulate import SimulationConfig, iter_transaction_json, simulate
from fraudstream.simulate.patterns import Pattern, RateCurve, Shape
from fraudstream.simulate.traffic import Pacer, PacerStats
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.producer import Producer

ENTITY_COLUMNS = ("customer_id", "card_id", "device_id", "terminal_id", "merchant_id")
Row = tuple[float, str, bytes]
"""(event time in epoch seconds, destination stream, JSON blob)."""

LABEL_COLUMNS = ("transaction_id", "is_fraud", "reported_at", "source", "customer_id",
                 "terminal_id", "tx_timestamp", "fraud_scenario")  # fmt: skip


@dataclass(frozen=True)
class GenerateOptions:
    tps: float = 1000.0
    """Target rate; 0 = unthrottled (as fast as Valkey takes it)."""
    duration: float = 10.0
    pattern: Pattern = "constant"
    fraud_ratio: float | None = None
    """Share of fraud among the sent transactions; None keeps the history's own."""
    speedup: float | None = None
    """Replay event time compressed this much instead of pacing at ``tps``."""
    run_id: str = "run"
    labels: bool = False
    isolate: bool = False
    """Prefix every entity id (customer, card, device, terminal, merchant) with the run id, so
    a run replaying history already sent starts from fresh feature state."""
    seed: int = 0
    batch_size: int = 500
    max_rows: int = 2_000_000
    """Upper bound of rows prepared for an unthrottled or replayed run."""
    shape: Shape | None = None
    """Parameters of the patterns (`Shape`); None = their defaults."""

    def __post_init__(self) -> None:
        if self.tps < 0:
            raise ConfigError("tps", f"must be >= 0, got {self.tps:g}")
        if self.fraud_ratio is not None and not 0 <= self.fraud_ratio <= 1:
            raise ConfigError("fraud_ratio", f"must be within [0, 1], got {self.fraud_ratio:g}")
        if not self.run_id or any(c in self.run_id for c in " \t\n"):
            raise ConfigError("run_id", f"must be a non-empty word, got {self.run_id!r}")

    def rows_needed(self) -> int:
        if self.speedup is not None or self.tps == 0:
            return self.max_rows
        curve = RateCurve(self.pattern, self.tps, self.duration, self.seed, self.shape)
        return min(self.max_rows, math.ceil(curve.count(self.duration)) + self.batch_size)


def load_history(
    path: Path | None,
    *,
    seed: int = 0,
    read: ReadOptions | None = None,
    told: Callable[[History], None] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Transactions and labels from ``path`` (a labelled history file or a simulate folder,
    read as `fraudstream.history` does), or a small full-profile world simulated now (2,000
    customers, 60 days, ~2 s). ``told`` hears what reading the file found (rows skipped…).

    Raises:
        ConfigError: the history has no ``is_fraud`` (or ``TX_FRAUD``) column.
        DataFileError: the file is unreadable or has bad rows.
    """
    if path is None:
        result = simulate(
            SimulationConfig(
                n_customers=2_000, n_terminals=4_000, n_days=60, profile="full", seed=seed
            )
        )
        return result.transactions, result.labels
    history = read_history(path, read)
    if told is not None:
        told(history)
    transactions = history.frame
    if "is_fraud" not in transactions.columns:
        raise ConfigError(
            "history", f"{history.path} has no is_fraud (or TX_FRAUD) column to send labels from"
        )
    labels = read_labels(history.path)
    if labels is None:
        labels = pl.DataFrame()
    return transactions, labels


def select(transactions: pl.DataFrame, n: int, options: GenerateOptions) -> pl.DataFrame:
    """``n`` rows in event-time order, at the requested fraud ratio, ids prefixed by run id.

    With the history's own ratio, a history shorter than ``n`` is repeated, each repeat
    shifted past the end of the previous one so event time keeps moving forward. With a
    chosen ratio, frauds and genuine rows are drawn (with replacement when one side is short,
    a repeated id getting a ``~k`` suffix), shuffled, and given the drawn timestamps in
    sorted order: event time still only moves forward, and the ratio holds over any prefix of
    the run (an unthrottled run stops at an unknown row), at the cost of each row's own time.
    """
    if options.fraud_ratio is None:
        picked = _cycle(transactions.sort("timestamp"), n)
    else:
        n_fraud = round(n * options.fraud_ratio)
        frauds = transactions.filter(pl.col("is_fraud"))
        if n_fraud and frauds.is_empty():
            raise ConfigError("fraud_ratio", "the history has no fraud to draw from")
        genuine = transactions.filter(~pl.col("is_fraud"))
        mixed = pl.concat(
            [_draw(frauds, n_fraud, options.seed), _draw(genuine, n - n_fraud, options.seed + 1)]
        ).sample(fraction=1.0, shuffle=True, seed=options.seed)
        picked = mixed.with_columns(mixed["timestamp"].sort())
    renamed = ["transaction_id", *(ENTITY_COLUMNS if options.isolate else ())]
    return picked.with_columns(
        (pl.lit(options.run_id + "-") + pl.col(c)).alias(c) for c in renamed if c in picked.columns
    )


def _draw(frame: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    if n == 0 or frame.is_empty():
        return frame.head(0)
    drawn = frame.sample(n, with_replacement=n > frame.height, seed=seed)
    repeat = pl.int_range(pl.len()).over("transaction_id")
    return drawn.with_columns(
        pl.when(repeat > 0)
        .then(pl.col("transaction_id") + "~" + repeat.cast(pl.String))
        .otherwise(pl.col("transaction_id"))
        .alias("transaction_id")
    )


def _cycle(frame: pl.DataFrame, n: int) -> pl.DataFrame:
    if n <= frame.height or frame.is_empty():
        return frame.head(n)
    epoch = frame["timestamp"].dt.epoch("us")
    span_us = int(epoch.max()) - int(epoch.min()) + 1_000_000  # type: ignore[arg-type]
    repeats = []
    for k in range(math.ceil(n / frame.height)):
        repeats.append(
            frame.with_columns(
                pl.col("timestamp") + pl.duration(microseconds=span_us * k),
                (pl.col("transaction_id") + f"~{k}") if k else pl.col("transaction_id"),
            )
        )
    return pl.concat(repeats).head(n)


def encode_rows(
    picked: pl.DataFrame, labels: pl.DataFrame, keys: StreamKeys, with_labels: bool, batch_size: int
) -> list[Row]:
    """The stream entries of a run, in event-time order."""
    partitions = _partitions(picked["customer_id"], keys)
    blobs = [b for batch in iter_transaction_json(picked, batch_size) for b in batch]
    times = (picked["timestamp"].dt.epoch("us") / 1e6).to_list()
    rows: list[Row] = [
        (t, keys.input(p), b) for t, p, b in zip(times, partitions, blobs, strict=True)
    ]
    if with_labels and not labels.is_empty():
        rows += _label_rows(picked, labels, keys)
        rows.sort(key=lambda row: row[0])
    return rows


def _partitions(customers: pl.Series, keys: StreamKeys) -> list[int]:
    table = {c: zlib.crc32(c.encode()) % keys.partitions for c in customers.unique().to_list()}
    return [table[c] for c in customers.to_list()]


def _label_rows(picked: pl.DataFrame, labels: pl.DataFrame, keys: StreamKeys) -> list[Row]:
    """Labels of the sent frauds, their ids (and entities) renamed like the transactions."""
    sent = picked.select(
        pl.col("transaction_id").alias("sent_id"),
        pl.col("transaction_id")
        .str.replace(r"^[^-]*-", "")
        .str.replace(r"~\d+$", "")
        .alias("transaction_id"),
        pl.col("timestamp").alias("sent_ts"),
        pl.col("customer_id").alias("sent_customer"),
        pl.col("terminal_id").alias("sent_terminal"),
    )
    joined = (
        sent.join(labels, on="transaction_id")
        .with_columns(
            pl.col("sent_id").alias("transaction_id"),
            pl.col("sent_customer").alias("customer_id"),
            pl.col("sent_terminal").alias("terminal_id"),
            (pl.col("reported_at") - pl.col("tx_timestamp") + pl.col("sent_ts")).alias(
                "reported_at"
            ),
            pl.col("sent_ts").alias("tx_timestamp"),
        )
        .select(LABEL_COLUMNS)
    )
    stamps = [
        pl.col(c).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ") for c in ("reported_at", "tx_timestamp")
    ]
    times = (joined["reported_at"].dt.epoch("us") / 1e6).to_list()
    blobs = joined.with_columns(stamps).write_ndjson().encode().splitlines()
    return [(t, keys.labels, b) for t, b in zip(times, blobs, strict=True)]


def prepare_traffic(options: GenerateOptions, keys: StreamKeys) -> tuple[pl.DataFrame, list[Row]]:
    """The rows a paced run of a small simulated world needs (`load_history` without a
    file), and the stream entries they make (no labels)."""
    transactions, labels = load_history(None, seed=options.seed)
    picked = select(transactions, options.rows_needed(), options)
    return picked, encode_rows(picked, labels, keys, False, options.batch_size)


def pacer(
    producer: Producer,
    options: GenerateOptions,
    on_progress: Callable[[int, float], None] | None = None,
    progress_every: float = 0.2,
) -> Pacer[Row]:
    """A `Pacer` sending rows with the pacing the options ask for (`Pacer.stop` ends it)."""

    def send(batch: list[Row]) -> None:
        producer.send_to_streams((stream, blob) for _, stream, blob in batch)

    return Pacer(
        send,
        tps=options.tps,
        pattern=options.pattern,
        duration=options.duration,
        speedup=options.speedup,
        event_time=lambda row: row[0],
        max_batch=options.batch_size,
        shape=options.shape,
        seed=options.seed,
        on_progress=on_progress,
        progress_every=progress_every,
    )


def run(
    producer: Producer,
    rows: list[Row],
    options: GenerateOptions,
    on_progress: Callable[[int, float], None] | None = None,
) -> PacerStats:
    """Send ``rows`` with the pacing the options ask for."""
    return pacer(producer, options, on_progress).run(rows)
