"""Evaluation under the protocol: the test window, cleaned as the Handbook does, scored by a
model, and every figure of the issue (`--json` keys are the keys of `Evaluation.metrics`).

The Handbook's best baselines on its own simulation, same protocol and test week (its
chapter 3.4 table, 7-day training), are kept in `HANDBOOK_BASELINE` to print beside ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from fraudstream.features import FeatureSet, default_feature_set
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.dataset import (
    Dataset,
    build_dataset,
    labels_for,
    neighbourhood_for,
    split,
)
from fraudstream.models.lookback import history_start
from fraudstream.models.metrics import (
    at_threshold,
    average_precision,
    card_precision_at_k,
    recall_by_scenario,
    roc_auc,
    share_threshold,
)
from fraudstream.models.protocol import Protocol
from fraudstream.models.train import TrainedModel, TrainOptions, resolve_protocol

HANDBOOK_BASELINE: dict[str, float] = {
    "auc_roc": 0.871,
    "average_precision": 0.658,
    "card_precision_at_100": 0.291,
}
"""The best of the Handbook's baselines (LR, trees, RF, XGBoost) on each metric."""
REVIEW_SHARE = 0.01
"""``recall_by_scenario_at_1pct``: each scenario's recall when the test week's top 1 % of
scores is flagged, one operating point for every model (each model's own thresholds flag
more or less)."""


@dataclass
class Evaluation:
    """The figures (``metrics``) and the arrays behind them (for the report's plots)."""

    metrics: dict[str, Any]
    y: NDArray[np.bool_] = field(repr=False)
    probability: NDArray[np.float64] = field(repr=False)
    supervised: NDArray[np.float64] = field(repr=False)
    """The booster's own log-odds (the supervised model alone)."""
    test: pl.DataFrame = field(repr=False)


def evaluate(
    model: ModelBundle | TrainedModel,
    history: pl.DataFrame | None,
    labels: pl.DataFrame | None,
    options: TrainOptions | None = None,
    *,
    dataset: Dataset | None = None,
    protocol: Protocol | None = None,
    definitions: FeatureSet | None = None,
    profiles: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """The metrics dict of `evaluate_detailed` (what ``evaluate --json`` prints)."""
    return evaluate_detailed(
        model,
        history,
        labels,
        options,
        dataset=dataset,
        protocol=protocol,
        definitions=definitions,
        profiles=profiles,
    ).metrics


def evaluate_detailed(
    model: ModelBundle | TrainedModel,
    history: pl.DataFrame | None,
    labels: pl.DataFrame | None,
    options: TrainOptions | None = None,
    *,
    dataset: Dataset | None = None,
    protocol: Protocol | None = None,
    definitions: FeatureSet | None = None,
    profiles: pl.DataFrame | None = None,
) -> Evaluation:
    """Score the protocol's test window and compute every metric.

    The protocol is, in order: ``protocol``; the one in ``options`` if it sets
    ``train_end``; the model's own (so ``train`` then ``evaluate`` on the same file needs
    nothing else). ``dataset`` (e.g. `TrainedModel.dataset`) skips the backfill.
    """
    bundle = model.bundle if isinstance(model, TrainedModel) else model
    if dataset is None and isinstance(model, TrainedModel):
        dataset = model.dataset
    options = options or TrainOptions()
    if protocol is None:
        if options.train_end is not None and history is not None:
            protocol = resolve_protocol(history, options)
        else:
            protocol = Protocol.from_dict(bundle.meta["protocol"])
    if dataset is None:
        if history is None:
            raise ValueError("evaluate: give a history or a dataset")
        definitions = definitions or default_feature_set()
        label_frame = labels_for(history, labels, label_delay_days=options.label_delay_days)
        dataset = build_dataset(
            history,
            label_frame,
            definitions=definitions,
            first_day=_first_needed_day(protocol, options.known_lookback_days),
            last_day=protocol.test_end,
            history_from=history_start(protocol, definitions),
            profiles=profiles,
            neighbours=neighbourhood_for(history, label_frame, protocol, definitions),
        )
    parts = split(dataset, protocol, known_lookback_days=options.known_lookback_days)
    test = parts.test
    X = dataset.matrix(test)
    y = test["y"].to_numpy()
    prob = bundle.probability(X)
    raw = bundle.raw(X)
    metrics = _metrics(test, y, prob, raw, bundle)
    metrics["protocol"] = protocol.to_dict()
    metrics["removed_known_compromised"] = parts.removed_known
    metrics["model_version"] = bundle.version
    return Evaluation(metrics, y, prob, raw, test)


def _metrics(
    test: pl.DataFrame,
    y: NDArray[np.bool_],
    prob: NDArray[np.float64],
    raw: NDArray[np.float64],
    bundle: ModelBundle,
) -> dict[str, Any]:
    day, card = test["day"].to_numpy(), test["customer_id"].to_numpy()
    score = prob * 1000
    threshold = bundle.threshold
    out: dict[str, Any] = {
        "auc_roc": roc_auc(y, prob),
        "average_precision": average_precision(y, prob),
        "card_precision_at_100": card_precision_at_k(day, card, prob, y, k=100),
    }
    op = at_threshold(y, score, test["amount"].to_numpy(), threshold)
    out.update(
        {
            "precision": op["precision"],
            "recall": op["recall"],
            "f1": op["f1"],
            "review_rate": op["review_rate"],
            "fraud_amount_caught": op["fraud_amount_caught"],
            "fraud_amount_caught_share": op["fraud_amount_caught_share"],
            "threshold": threshold,
            "recall_by_scenario": recall_by_scenario(test["scenario"].to_numpy(), score, threshold),
            "recall_by_scenario_at_1pct": recall_by_scenario(
                test["scenario"].to_numpy(), score, share_threshold(score, REVIEW_SHARE)
            ),
            "supervised_only": {
                "auc_roc": roc_auc(y, raw),
                "average_precision": average_precision(y, raw),
                "card_precision_at_100": card_precision_at_k(day, card, raw, y, k=100),
            },
            "handbook_baseline": dict(HANDBOOK_BASELINE),
            "test_transactions": int(len(y)),
            "test_frauds": int(y.sum()),
            "fraud_amount": op["fraud_amount"],
        }
    )
    return out


def compare(
    a: ModelBundle,
    b: ModelBundle,
    history: pl.DataFrame | None,
    labels: pl.DataFrame | None,
    options: TrainOptions | None = None,
    *,
    dataset: Dataset | None = None,
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """Two versions on the same labelled test window: agreement and metric deltas (b − a).

    Agreement: the share of transactions both flag or both pass at their own thresholds,
    and the overlap of their 100 riskiest transactions.
    """
    protocol = protocol or Protocol.from_dict(a.meta["protocol"])
    ea = evaluate_detailed(a, history, labels, options, dataset=dataset, protocol=protocol)
    eb = evaluate_detailed(b, history, labels, options, dataset=dataset, protocol=protocol)
    flag_a = ea.probability * 1000 >= a.threshold
    flag_b = eb.probability * 1000 >= b.threshold
    top_a = set(np.argsort(-ea.probability)[:100].tolist())
    top_b = set(np.argsort(-eb.probability)[:100].tolist())
    keys = ("auc_roc", "average_precision", "card_precision_at_100", "precision", "recall", "f1")
    return {
        "a": a.version,
        "b": b.version,
        "protocol": protocol.to_dict(),
        "decision_agreement": float((flag_a == flag_b).mean()),
        "flagged_by_both": int((flag_a & flag_b).sum()),
        "flagged_only_a": int((flag_a & ~flag_b).sum()),
        "flagged_only_b": int((~flag_a & flag_b).sum()),
        "top100_overlap": len(top_a & top_b) / 100,
        "score_correlation": float(np.corrcoef(ea.probability, eb.probability)[0, 1]),
        "a_metrics": {k: ea.metrics[k] for k in keys},
        "b_metrics": {k: eb.metrics[k] for k in keys},
        "delta": {k: eb.metrics[k] - ea.metrics[k] for k in keys},
    }


def _first_needed_day(protocol: Protocol, lookback: int | None) -> date:
    """The earliest day the test-set hygiene looks at (features replay the history from
    `lookback.history_start`, as training does)."""
    if lookback is None:
        return protocol.train_start
    return max(protocol.train_start, protocol.train_end - timedelta(days=lookback - 1))
