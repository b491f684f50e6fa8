"""One calibrated 0–1000 score from the supervised model and the anomaly detector.

Stacking, not a fixed weighted sum: a two-input logistic regression
``P(fraud) = σ(a · logit(p_gbdt) + b · anomaly + c)`` fitted on the holdout days at the end
of the training window (predictions the trees never trained on). One fit both weighs the
anomaly score (``b`` is learned, and is ~0 when it adds nothing) and calibrates the
probability (Platt scaling), so ``score / 1000`` reads as the probability of fraud.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
EPS = 1e-7


@dataclass(frozen=True)
class Stacker:
    """Weights on ``[raw GBDT log-odds, anomaly score]`` plus an intercept."""

    weights: tuple[float, ...]
    intercept: float

    def probability(self, raw: F64, anomaly: F64 | None) -> F64:
        z = self.weights[0] * raw + self.intercept
        if anomaly is not None and len(self.weights) > 1:
            z = z + self.weights[1] * anomaly
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -35, 35))), dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        return {"weights": list(self.weights), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Stacker:
        weights = data["weights"]
        assert isinstance(weights, list)
        intercept = data["intercept"]
        assert isinstance(intercept, int | float)
        return cls(tuple(float(w) for w in weights), float(intercept))


def fit_stacker(
    raw: F64, anomaly: F64 | None, y: NDArray[np.bool_], *, l2: float = 1e-3
) -> Stacker:
    """Logistic regression by Newton's method (2–3 parameters: a few iterations)."""
    cols = [raw] if anomaly is None else [raw, anomaly]
    A = np.column_stack([*cols, np.ones(len(raw))])
    t = np.asarray(y, dtype=np.float64)
    w = np.zeros(A.shape[1])
    w[0] = 1.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -35, 35)))
        grad = A.T @ (p - t) + l2 * np.r_[w[:-1], 0.0]
        hess = (A * (p * (1 - p) + EPS)[:, None]).T @ A + l2 * np.diag(
            np.r_[np.ones(len(w) - 1), 0.0]
        )
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Stacker(tuple(float(v) for v in w[:-1]), float(w[-1]))


def to_score(probability: F64) -> NDArray[np.int64]:
    """Probability -> the integer 0–1000 score of a `Decision`."""
    return np.rint(np.clip(probability, 0.0, 1.0) * 1000).astype(np.int64)
