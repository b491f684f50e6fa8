"""From a history (+ labels) to model-ready matrices under the time-based protocol.

- `load_history`: any history file (`fraudstream.history`) in our columns.
- `labels_for`: the given labels, or ``is_fraud`` / ``TX_FRAUD`` reported ``label_delay_days``
  after each fraud (the Handbook's assumption: every fraud is known one delay period later).
- `build_dataset`: point-in-time features from the offline backfill, the target and the
  ground truth (scenario, amount) aligned on the transactions.
- `split`: training rows (labels as known when the model is trained), and the test rows
  cleaned as the Handbook does (customers known to be compromised are taken out).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from numpy.typing import NDArray

from fraudstream.features import FeatureSet, backfill_rows, default_feature_set
from fraudstream.features.neighbours import Neighbourhood, build_neighbourhood
from fraudstream.history import read_history
from fraudstream.models.errors import ModelError
from fraudstream.models.lookback import lookback_days
from fraudstream.models.protocol import Protocol

F64 = NDArray[np.float64]


def load_history(path: Path) -> pl.DataFrame:
    """A history file (or a folder holding ``transactions.parquet``) in our column names:
    `fraudstream.history.read_history` with its defaults (bad rows stop the read).

    Raises:
        DataFileError: the file is missing, unreadable, lacks a field or has a bad row.
    """
    return read_history(path).frame


def labels_for(
    history: pl.DataFrame, labels: pl.DataFrame | None, *, label_delay_days: float = 7.0
) -> pl.DataFrame:
    """Fraud labels: ``labels`` if given, else one per ``is_fraud`` row reported
    ``label_delay_days`` after the transaction.

    Raises:
        ModelError: neither labels nor an ``is_fraud`` column.
    """
    if labels is not None:
        out = labels.with_columns(pl.col("transaction_id").cast(pl.String))
        if "is_fraud" in out.columns:
            out = out.filter(pl.col("is_fraud"))
        else:
            out = out.with_columns(pl.lit(True).alias("is_fraud"))
        if "reported_at" not in out.columns:
            raise ModelError("labels: required column 'reported_at' is missing")
        return out
    if "is_fraud" not in history.columns:
        raise ModelError("labels: no labels given and the history has no is_fraud / TX_FRAUD")
    delay = timedelta(days=label_delay_days)
    return history.filter(pl.col("is_fraud")).select(
        "transaction_id",
        pl.lit(True).alias("is_fraud"),
        (pl.col("timestamp") + delay).alias("reported_at"),
        "customer_id",
        "terminal_id",
        pl.col("timestamp").alias("tx_timestamp"),
    )


@dataclass(frozen=True)
class Dataset:
    """Transactions with features, target and ground truth, in time order.

    ``frame`` columns: ``transaction_id``, ``timestamp``, ``day``, ``customer_id``,
    ``amount``, ``fraud`` (ground truth, any report time), ``reported_at`` (of its label,
    null when genuine), ``scenario`` (0 genuine or unknown) and ``_i``, the row's place in
    ``values``: the features live in one matrix, not in frame columns, so a Handbook-sized
    history is held once (the frames `split` cuts stay small, and only the rows a model
    needs are copied out, by `matrix`).
    """

    frame: pl.DataFrame
    values: F64
    """(rows, features) float64 in ``feature_names`` order."""
    feature_names: list[str]

    def matrix(self, frame: pl.DataFrame | None = None) -> F64:
        """The features of ``frame``'s rows (default: all) as a C-ordered float64 matrix."""
        src = self.frame if frame is None else frame
        return np.ascontiguousarray(self.values[src["_i"].to_numpy()])


def build_dataset(
    history: pl.DataFrame,
    labels: pl.DataFrame,
    *,
    definitions: FeatureSet | None = None,
    first_day: date | None = None,
    last_day: date | None = None,
    lateness_s: int = 3600,
    history_from: date | None = None,
    features: pl.DataFrame | None = None,
    profiles: pl.DataFrame | None = None,
    neighbours: Neighbourhood | None = None,
) -> Dataset:
    """Backfill the features of ``history`` (point in time: labels count only once reported)
    and keep the rows dated ``first_day..last_day`` (features still see the earlier history).

    ``history_from`` is the first day replayed (default: ``first_day`` minus
    `lookback.lookback_days`); commands that must agree on a row's features give the same
    one (`lookback.history_start`).

    ``features`` (``transaction_id`` + feature columns, e.g. a saved backfill of the same
    history and labels) skips the backfill; ``profiles`` feeds the static features (the
    same profiles must then be loaded online, or the served model sees NaN where it learnt
    values); ``neighbours`` feeds the co-visitation feature (`neighbourhood_for`).
    """
    definitions = definitions or default_feature_set()
    names = definitions.names
    day = pl.col("timestamp").dt.date()
    if last_day is not None:
        history = history.filter(day <= last_day)
    if history_from is None and first_day is not None:
        history_from = first_day - timedelta(days=lookback_days(definitions))
    if history_from is not None:
        history = history.filter(day >= history_from)
    base = history.select(
        "transaction_id",
        "timestamp",
        day.alias("day"),
        pl.col("customer_id").cast(pl.String),
        "amount",
        *([pl.col("fraud_scenario").cast(pl.Int8)] if "fraud_scenario" in history.columns else []),
    )
    if features is None:
        since = None if first_day is None else datetime.combine(first_day, time(), UTC)
        got = backfill_rows(
            history,
            labels,
            definitions,
            lateness_s=lateness_s,
            profiles=profiles,
            since=since,
            neighbours=neighbours,
        )
        base = base[got.rows].with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"))
        values = got.values
    else:
        base = base.unique("transaction_id", keep="first", maintain_order=True)
        if first_day is not None:
            base = base.filter(pl.col("day") >= first_day)
        base = base.sort("timestamp", maintain_order=True)
        joined = base.select(pl.col("transaction_id").cast(pl.String)).join(
            features.with_columns(pl.col("transaction_id").cast(pl.String)),
            on="transaction_id",
            how="left",
            maintain_order="left",
        )
        values = joined.select(names).to_numpy().astype(np.float64, copy=False)
        base = base.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("_i"))
    truth = labels.select(
        pl.col("transaction_id").cast(pl.String),
        pl.col("reported_at"),
        *(
            [pl.col("fraud_scenario").cast(pl.Int8).alias("_lscen")]
            if "fraud_scenario" in labels.columns
            else []
        ),
    ).unique("transaction_id", keep="first")
    frame = base.with_columns(pl.col("transaction_id").cast(pl.String)).join(
        truth, on="transaction_id", how="left", maintain_order="left"
    )
    scen = pl.col("fraud_scenario") if "fraud_scenario" in frame.columns else pl.lit(None, pl.Int8)
    lscen = pl.col("_lscen") if "_lscen" in frame.columns else pl.lit(None, pl.Int8)
    frame = frame.with_columns(
        pl.col("reported_at").is_not_null().alias("fraud"),
        pl.coalesce(scen, lscen, pl.lit(0, pl.Int8)).cast(pl.Int8).alias("scenario"),
    ).with_columns(pl.when(pl.col("fraud")).then(pl.col("scenario")).otherwise(0).alias("scenario"))
    columns = [
        "transaction_id",
        "timestamp",
        "day",
        "customer_id",
        "amount",
        "fraud",
        "reported_at",
        "scenario",
        "_i",
    ]
    return Dataset(frame.select(columns), values, names)


def neighbourhood_for(
    history: pl.DataFrame, labels: pl.DataFrame, protocol: Protocol, definitions: FeatureSet
) -> Neighbourhood | None:
    """The co-visitation neighbourhood `train` and `evaluate` both give the backfill: the
    `neighbours.DAYS` days before the training window (so no training or test row helped
    build it), frauds known by then left out; None if ``definitions`` read none. Online,
    ``fraudstream features load-neighbours --history H --until <first training day>``
    loads the same records."""
    if not definitions.uses_neighbours:
        return None
    until = datetime.combine(protocol.train_start, time(), UTC)
    return build_neighbourhood(history, until, labels=labels)


@dataclass(frozen=True)
class Split:
    """Rows of one protocol: ``train`` (target ``y``: fraud label reported before the
    test starts) and ``test`` (after hygiene; target ``y`` = ground truth)."""

    protocol: Protocol
    train: pl.DataFrame
    test: pl.DataFrame
    removed_known: int
    """Test transactions dropped because their customer was known to be compromised."""


def split(dataset: Dataset, protocol: Protocol, *, known_lookback_days: int | None = 7) -> Split:
    """The protocol's training rows and its cleaned test rows.

    Test-set hygiene (the Handbook's): on test day ``t``, customers with a fraud dated
    before ``t - delay`` (from ``known_lookback_days`` before the delay period onwards;
    ``None`` = the whole training window) are known compromised and their transactions
    are removed: a real team would already have blocked those cards. The default, 7, is the
    Handbook's training week, so the test set does not change with the training length.

    Raises:
        ModelError: a window has no rows, or the training window has no fraud.
    """
    f = dataset.frame
    day = pl.col("day")
    cutoff = _midnight(protocol.test_start)
    train = f.filter((day >= protocol.train_start) & (day <= protocol.train_end)).with_columns(
        (pl.col("fraud") & (pl.col("reported_at") < cutoff)).alias("y")
    )
    test = f.filter((day >= protocol.test_start) & (day <= protocol.test_end))
    for name, part in (("training", train), ("test", test)):
        if part.height == 0:
            raise ModelError(f"protocol: the {name} window has no transactions ({protocol})")
    if not train["y"].any():
        raise ModelError(f"protocol: no known fraud in the training window ({protocol})")
    lookback = protocol.train_days if known_lookback_days is None else known_lookback_days
    known_from = protocol.train_end - timedelta(days=lookback - 1)
    frauds = (
        f.filter(pl.col("fraud") & (day >= known_from))
        .group_by("customer_id")
        .agg(day.min().alias("_first_fraud"))
    )
    delay = timedelta(days=protocol.delay_days)
    test = test.join(frauds, on="customer_id", how="left")
    known = pl.col("_first_fraud").is_not_null() & (pl.col("_first_fraud") < day - delay)
    kept = test.filter(~known).drop("_first_fraud").with_columns(pl.col("fraud").alias("y"))
    return Split(protocol, train, kept, test.height - kept.height)


def _midnight(day: date) -> pl.Expr:
    return pl.lit(day).cast(pl.Datetime("us", "UTC"))
