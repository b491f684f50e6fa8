"""Drift windows to publish: a made-up reference and live windows of it, shifted or not."""

from __future__ import annotations

import numpy as np

from fraudstream.drift.reference import Reference, build_reference
from fraudstream.drift.window import DriftWindow


def made_reference(rng: np.random.Generator) -> Reference:
    """Two features, ``a`` (normal) and ``b`` (exponential), and exponential scores."""
    X = np.column_stack([rng.normal(0, 1, 5_000), rng.exponential(1, 5_000)])
    scores = np.clip(rng.exponential(40, 5_000), 0, 1000).round()
    return build_reference(scores, X, ["a", "b"], {"a": 2.0, "b": 1.0}, {"review": 400})


def window(ref: Reference, rng: np.random.Generator, shift: float) -> DriftWindow:
    """2,000 live rows of ``ref``'s population, feature ``a`` moved by ``shift``."""
    made = DriftWindow(ref, "v1", ["a", "b"], capacity=2_000, min_rows=1_000)
    X = np.column_stack([rng.normal(shift, 1, 2_000), rng.exponential(1, 2_000)])
    made.observe(X, np.clip(rng.exponential(40, 2_000), 0, 1000).round())
    return made
