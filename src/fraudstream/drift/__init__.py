"""Drift: how far live traffic has moved from what the active model was trained on.

- `psi`: the population stability index of binned counts (< 0.1 stable, 0.1–0.25
  moderate, > 0.25 significant), with an epsilon for empty bins.
- `reference`: the score's and the top features' training distributions, made by `train`
  and kept in the model's metadata (old models have none, and no drift figures).
- `window`: a worker's rolling window (its last 10,000 scored transactions) of bin counts,
  and the figures of such counts.
- `monitor`: `DriftMonitor`, fed by the scorer after each batch, setting the
  ``fraudstream_score_psi`` / ``fraudstream_feature_psi`` gauges and publishing the window.
- `fleet`: the workers' windows in Valkey, summed into one figure per model (the console,
  the alert).
- `alert`: `DriftWatch`, one alert per episode over ``drift_psi_alert``.
- `report`: per-week precision and recall of the model's flagged decisions against the
  labels in the store.
"""

from __future__ import annotations

from fraudstream.drift.psi import level, psi
from fraudstream.drift.reference import Reference
from fraudstream.drift.window import DriftFigures, DriftWindow

__all__ = ["DriftFigures", "DriftWindow", "Reference", "level", "psi"]
