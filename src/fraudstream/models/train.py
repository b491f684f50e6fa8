"""Training: supervised gradient-boosted trees + an isolation forest, stacked and calibrated.

Under the `Protocol`, the training window is split in time: the trees learn on its first
part, and its last ``holdout_days`` (never seen by the trees) serve three purposes —
early stopping (on Average Precision), fitting the `Stacker` (weight of the anomaly score and
calibration in one logistic regression) and choosing the operating thresholds. The forest
learns what genuine traffic looks like from the genuine rows of the first part.

Class imbalance (~0.8 % fraud): early stopping on Average Precision, a metric driven by the
rare class, ``scale_pos_weight`` (an option; measured on the validation week, see the
package docs) and thresholds chosen on the fraud-aware F1, never at 0.5.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from fraudstream.drift.reference import build_reference
from fraudstream.features import FeatureSet, default_feature_set
from fraudstream.models.anomaly import fit_isolation_forest
from fraudstream.models.bundle import ModelBundle, feature_signature
from fraudstream.models.combine import fit_stacker, to_score
from fraudstream.models.dataset import (
    Dataset,
    build_dataset,
    labels_for,
    neighbourhood_for,
    split,
)
from fraudstream.models.errors import ModelError
from fraudstream.models.lookback import history_start
from fraudstream.models.metrics import average_precision, best_f1_threshold, roc_auc
from fraudstream.models.protocol import Protocol, default_protocol

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    """Everything `train` and `evaluate` can be told; the defaults are the measured best."""

    train_end: date | None = None
    """Last training day; default 2018-07-31 on Handbook-dated data, else the data's last
    day minus the test and delay periods."""
    train_days: int = 56
    """Length of the training window (7 reproduces the Handbook)."""
    fit_train_days: bool = False
    """Shorten ``train_days`` to what the data holds before the delay, down to a week (what
    the CLI does unless ``--train-days`` is given: `protocol.default_protocol`)."""
    delay_days: int = 7
    test_days: int = 7
    label_delay_days: float = 7.0
    """Without a labels file, a fraud (``is_fraud`` / ``TX_FRAUD``) is known this long after."""
    holdout_days: int | None = None
    """Last training days kept for early stopping, stacking and thresholds
    (default: a quarter of the window, 1 to 7 days)."""
    known_lookback_days: int | None = 7
    """Test-set hygiene lookback (see `dataset.split`)."""
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 50
    feature_fraction: float = 0.8
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    scale_pos_weight: float = 1.0
    anomaly: bool = True
    anomaly_trees: int = 100
    seed: int = 0
    threads: int = 0
    """Training threads (0 = LightGBM's default, all cores)."""

    def __post_init__(self) -> None:
        if self.holdout_days is not None and not 1 <= self.holdout_days < self.train_days:
            raise ModelError(f"holdout_days: must be in [1, train_days), got {self.holdout_days}")

    @property
    def holdout(self) -> int:
        if self.holdout_days is not None:
            return self.holdout_days
        return max(1, min(7, self.train_days // 4))

    def lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "scale_pos_weight": self.scale_pos_weight,
            "metric": "average_precision",
            "seed": self.seed,
            "deterministic": True,
            "verbose": -1,
            **({"num_threads": self.threads} if self.threads else {}),
        }


@dataclass
class TrainedModel:
    """A freshly trained bundle and how it came to be (not yet in the registry)."""

    bundle: ModelBundle
    protocol: Protocol
    holdout: dict[str, float]
    dataset: Dataset | None = field(default=None, repr=False)
    """The backfilled rows (training to test window), kept so `evaluate` can reuse them."""


def resolve_protocol(history: pl.DataFrame, options: TrainOptions) -> Protocol:
    """The protocol ``options`` describe on this history's dates."""
    days = history.select(
        pl.col("timestamp").dt.date().min().alias("a"),
        pl.col("timestamp").dt.date().max().alias("b"),
    ).row(0)
    return default_protocol(
        days[0],
        days[1],
        train_end=options.train_end,
        train_days=options.train_days,
        delay_days=options.delay_days,
        test_days=options.test_days,
        fit=options.fit_train_days,
    )


def train(
    history: pl.DataFrame,
    labels: pl.DataFrame | None,
    options: TrainOptions | None = None,
    progress: Progress | None = None,
    *,
    definitions: FeatureSet | None = None,
    profiles: pl.DataFrame | None = None,
) -> TrainedModel:
    """Train on ``history`` (our columns, see `dataset.load_history`) under the protocol;
    ``profiles`` (customer profiles) feed the static features.

    Raises:
        ModelError: the data does not cover the protocol, or has no fraud to learn from.
    """
    options = options or TrainOptions()
    definitions = definitions or default_feature_set()
    say = progress or (lambda _msg: None)
    protocol = resolve_protocol(history, options)
    if protocol.train_days != options.train_days:  # fitted to the data
        options = replace(options, train_days=protocol.train_days)
    say(f"backfilling features for {protocol.train_start}..{protocol.test_end}")
    label_frame = labels_for(history, labels, label_delay_days=options.label_delay_days)
    dataset = build_dataset(
        history,
        label_frame,
        definitions=definitions,
        first_day=protocol.train_start,
        last_day=protocol.test_end,
        history_from=history_start(protocol, definitions),
        profiles=profiles,
        neighbours=neighbourhood_for(history, label_frame, protocol, definitions),
    )
    return fit(dataset, protocol, options, say, definitions=definitions)


def fit(
    dataset: Dataset,
    protocol: Protocol,
    options: TrainOptions,
    progress: Progress | None = None,
    *,
    definitions: FeatureSet | None = None,
) -> TrainedModel:
    """Train on a backfilled `Dataset` (the step after the backfill, for reuse in tuning)."""
    say = progress or (lambda _msg: None)
    definitions = definitions or default_feature_set()
    train_rows = split(dataset, protocol, known_lookback_days=options.known_lookback_days).train
    cut = protocol.train_end - timedelta(days=options.holdout)
    learn = train_rows.filter(pl.col("day") <= cut)
    hold = train_rows.filter(pl.col("day") > cut)
    for name, part in (("learning", learn), ("holdout", hold)):
        if not part["y"].any():
            raise ModelError(f"train: no known fraud in the {name} part of {protocol}")
    X_learn, y_learn = dataset.matrix(learn), learn["y"].to_numpy()
    X_hold, y_hold = dataset.matrix(hold), hold["y"].to_numpy()
    say(f"training trees on {learn.height:,} rows, early stopping on {hold.height:,}")
    started = time.perf_counter()
    booster = _fit_trees(X_learn, y_learn, X_hold, y_hold, options, dataset.feature_names)
    raw_hold = np.asarray(booster.predict(X_hold, raw_score=True), dtype=np.float64)
    forest = None
    anomaly_hold = None
    if options.anomaly:
        say("fitting the isolation forest on genuine traffic")
        forest, _ = fit_isolation_forest(
            X_learn[~y_learn], trees=options.anomaly_trees, seed=options.seed
        )
        anomaly_hold = forest.score(X_hold)
    stacker = fit_stacker(raw_hold, anomaly_hold, y_hold)
    prob_hold = stacker.probability(raw_hold, anomaly_hold)
    thresholds = thresholds_for(y_hold, prob_hold * 1000)
    holdout = {
        "auc_roc": roc_auc(y_hold, prob_hold),
        "average_precision": average_precision(y_hold, prob_hold),
        "supervised_auc_roc": roc_auc(y_hold, raw_hold),
        "supervised_average_precision": average_precision(y_hold, raw_hold),
        "best_iteration": float(booster.best_iteration or booster.current_iteration()),
        "train_seconds": time.perf_counter() - started,
    }
    meta = {
        "format": 1,
        "feature_names": dataset.feature_names,
        "feature_signature": feature_signature(definitions, dataset.feature_names),
        "protocol": protocol.to_dict(),
        "holdout_days": options.holdout,
        "data_hash": data_hash(train_rows),
        "train_rows": train_rows.height,
        "train_frauds": int(train_rows["y"].sum()),
        "thresholds": thresholds,
        "stacker": stacker.to_dict(),
        "metrics": {"holdout": holdout},
        "options": _jsonable(asdict(options)),
        "created_at": datetime.now(UTC).isoformat(),
        "lightgbm": lgb.__version__,
        "drift": _reference(booster, X_hold, to_score(prob_hold), thresholds, dataset),
    }
    bundle = ModelBundle(booster, stacker, forest, meta)
    return TrainedModel(bundle, protocol, holdout, dataset)


def _fit_trees(
    X: np.ndarray,
    y: np.ndarray,
    Xv: np.ndarray,
    yv: np.ndarray,
    options: TrainOptions,
    names: list[str],
) -> lgb.Booster:
    learn = lgb.Dataset(X, y.astype(np.int8), feature_name=names, free_raw_data=True)
    hold = lgb.Dataset(Xv, yv.astype(np.int8), reference=learn)
    return lgb.train(
        options.lgb_params(),
        learn,
        num_boost_round=options.max_rounds,
        valid_sets=[hold],
        callbacks=[lgb.early_stopping(options.early_stopping_rounds, verbose=False)],
    )


def _reference(
    booster: lgb.Booster,
    X_hold: np.ndarray,
    scores: np.ndarray,
    thresholds: dict[str, float],
    dataset: Dataset,
) -> dict[str, Any]:
    """What live traffic's drift is measured against (`fraudstream.drift.reference`): the
    holdout's scores and its top features by gain."""
    gain = booster.feature_importance(importance_type="gain").tolist()
    importance = dict(zip(dataset.feature_names, gain, strict=True))
    names = dataset.feature_names
    made = build_reference(scores.astype(np.float64), X_hold, names, importance, thresholds)
    return made.to_meta()


BLOCK_PRECISION = 0.9
"""Block where at least nine in ten of the holdout's flagged payments were fraud."""
REVIEW_PRECISION = 0.5
"""A review band worth an analyst's time: at least one fraud in two reviews."""
MAX_REVIEW_SHARE = 0.01
"""Such a band holds at most this share of the holdout's payments (beside those blocked)."""


def thresholds_for(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The review and block thresholds (scores 0–1000) from the holdout.

    Review at the best F1; block at the deepest score still at `BLOCK_PRECISION`, never below
    review. A model precise enough that its best F1 already blocks leaves no review band, so
    analysts would see nothing and the outcome only ever be approve or block; review then goes
    down to the deepest score at `REVIEW_PRECISION`, as far as `MAX_REVIEW_SHARE` allows.
    """
    best = best_f1_threshold(y, score)
    block, review = max(_deepest_at(y, score, BLOCK_PRECISION), best), best
    if block == best:
        ranked = np.sort(score)[::-1]
        room = int((score >= block).sum()) + int(len(score) * MAX_REVIEW_SHARE)
        capacity = float(ranked[min(room, len(ranked)) - 1])
        review = min(best, max(_deepest_at(y, score, REVIEW_PRECISION), capacity))
    return {"review": float(review), "block": float(block)}


def _deepest_at(y: np.ndarray, score: np.ndarray, precision: float) -> float:
    """The lowest score of a fraud such that the payments at or above it are fraud at
    ``precision`` or better (1000: none is). A fraud's: going lower would add only genuine
    payments while the precision allows it."""
    order = np.argsort(-score, kind="mergesort")
    ranked, fraud = score[order], y[order].astype(bool)
    hits = np.cumsum(fraud) / np.arange(1, len(y) + 1)
    last = np.concatenate([ranked[1:] != ranked[:-1], [True]])  # a tie counts whole
    ok = np.flatnonzero((hits >= precision) & last & fraud)
    return float(ranked[ok[-1]]) if len(ok) else 1000.0


def data_hash(frame: pl.DataFrame) -> str:
    """SHA-256 of the training rows' ids and targets: same data, same hash."""
    digest = hashlib.sha256()
    digest.update("\n".join(frame["transaction_id"].to_list()).encode())
    digest.update(frame["y"].to_numpy().astype(np.uint8).tobytes())
    return digest.hexdigest()


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in data.items()}
