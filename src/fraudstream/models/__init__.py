"""Models: training under the Handbook's delay protocol, evaluation, registry, explanations.

- `protocol`, `dataset`: time-based train / delay / test windows, features from the offline
  backfill, the Handbook's test-set hygiene.
- `train`: LightGBM (early stopping on a holdout at the end of the training window) plus an
  isolation forest on genuine traffic, stacked into one calibrated 0–1000 score (`combine`).
- `metrics`, `evaluate`, `report`: AUC ROC, Average Precision, Card Precision@100, the
  operating point, recall per scenario; Markdown + PNG report.
- `bundle`, `artifact`, `registry`, `keys`, `watcher`: a loaded version, its signed
  pickle-free artifact, versions in Valkey with activate / rollback / shadow, the signing key
  each host needs, and the hot-swap `ModelWatcher`.
- `explain`: LightGBM contributions as readable reason codes.
"""

from __future__ import annotations

from fraudstream.models.bundle import ModelBundle, feature_signature
from fraudstream.models.dataset import Dataset, build_dataset, labels_for, load_history, split
from fraudstream.models.errors import MissingKeyError, ModelError, SignatureError
from fraudstream.models.evaluate import (
    HANDBOOK_BASELINE,
    Evaluation,
    compare,
    evaluate,
    evaluate_detailed,
)
from fraudstream.models.keys import KeySource, registry_key
from fraudstream.models.protocol import Protocol
from fraudstream.models.registry import ModelRegistry, VersionInfo
from fraudstream.models.report import summary_table, write_report
from fraudstream.models.train import TrainedModel, TrainOptions, fit, train
from fraudstream.models.watcher import ModelHealth, ModelWatcher

__all__ = [
    "HANDBOOK_BASELINE",
    "Dataset",
    "Evaluation",
    "KeySource",
    "MissingKeyError",
    "ModelBundle",
    "ModelError",
    "ModelHealth",
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
    "split",
    "summary_table",
    "train",
    "write_report",
]
