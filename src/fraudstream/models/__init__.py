"""Models: training under the Handbook's delay protocol, evaluation, registry, explanations.

- `protocol`, `dataset`: time-based train / delay / test windows, features from the offline
  backfill, the Handbook's test-set hygiene.
- `train`: LightGBM (early stopping on a holdout at the end of the training window) plus an
  isolation forest on genuine traffic, stacked into one calibrated 0–1000 score (`combine`).
- `metrics`, `evaluate`, `report`: AUC ROC, Average Precision, Card Precision@100, the
  operating point, recall per scenario; Markdown + PNG report.
- `bundle`, `artifact`, `registry`: a loaded version, its signed pickle-free artifact, and
  versions in Valkey with activate / rollback / shadow and the hot-swap `ModelWatcher`.
- `explain`: LightGBM contributions as readable reason codes.
"""

from __future__ import annotations

from fraudstream.models.bundle import ModelBundle, feature_signature
from fraudstream.models.dataset import Dataset, build_dataset, labels_for, load_history, split
from fraudstream.models.errors import ModelError, SignatureError
from fraudstream.models.evaluate import (
    HANDBOOK_BASELINE,
    Evaluation,
    compare,
    evaluate,
    evaluate_detailed,
)
from fraudstream.models.protocol import Protocol
from fraudstream.models.registry import (
    ModelRegistry,
    ModelWatcher,
    VersionInfo,
    registry_key,
    resolve_key,
)
from fraudstream.models.report import summary_table, write_report
from fraudstream.models.train import TrainedModel, TrainOptions, fit, train

__all__ = [
    "HANDBOOK_BASELINE",
    "Dataset",
    "Evaluation",
    "ModelBundle",
    "ModelError",
    "ModelRegistry",
    "ModelWatcher",
    "Protocol",
    "SignatureError",
    "TrainOptions",
    "TrainedModel",
    "VersionInfo",
    "build_dataset",
    "compare",
    "evaluate",
    "evaluate_detailed",
    "feature_signature",
    "fit",
    "labels_for",
    "load_history",
    "registry_key",
    "resolve_key",
    "split",
    "summary_table",
    "train",
    "write_report",
]
