"""The training reference drift is measured against, made by `train` and kept in the model's
metadata (``meta["drift"]``).

Two kinds of binned distributions, both measured on the holdout days (the last days of the
training window, which the trees never learnt from and on which the thresholds were chosen,
so their scores are what live traffic should look like):

- the **score**: edges at the holdout scores' deciles plus the model's review and block
  thresholds (the deciles of a fraud score crowd near zero; the thresholds keep a bin for
  the flagged tail);
- the model's **top features** by total gain (`TOP_FEATURES`): edges at their deciles.

Ties merge edges (a count feature that is mostly 0 gets few bins). Each distribution has
``len(edges) + 2`` bins, the last one for missing values (see `psi.bin_counts`). A model
with 5 features stores ~130 numbers. Models trained before this existed have no
``meta["drift"]``: `Reference.from_meta` gives None, and they show no drift figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.drift.psi import bin_counts
from fraudstream.errors import DriftError

FORMAT = 1
TOP_FEATURES = 5
DECILES = tuple(q / 10 for q in range(1, 10))


@dataclass(frozen=True)
class Binned:
    """One reference distribution: bin edges and the reference's share in each bin."""

    name: str
    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def counts(self, values: NDArray[np.float64]) -> NDArray[np.int64]:
        return bin_counts(values, self.edges)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "edges": list(self.edges), "shares": list(self.shares)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Binned:
        binned = cls(str(data["name"]), tuple(data["edges"]), tuple(data["shares"]))
        if len(binned.shares) != len(binned.edges) + 2:
            raise DriftError(
                f"drift.{binned.name}: {len(binned.shares)} shares for "
                f"{len(binned.edges)} edges (need edges + 2)"
            )
        return binned


@dataclass(frozen=True)
class Reference:
    """The score's and the top features' reference distributions."""

    score: Binned
    features: tuple[Binned, ...]
    rows: int

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_meta(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "score": self.score.to_dict(),
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Reference | None:
        """The reference a model's metadata holds; None for a model trained without one.

        Raises:
            DriftError: the metadata holds a reference this code cannot read.
        """
        data = meta.get("drift")
        if data is None:
            return None
        if data.get("format") != FORMAT:
            raise DriftError(f"drift.format: this code reads {FORMAT}, got {data.get('format')}")
        return cls(
            Binned.from_dict(data["score"]),
            tuple(Binned.from_dict(f) for f in data["features"]),
            int(data["rows"]),
        )


def build_reference(
    scores: NDArray[np.float64],
    X: NDArray[np.float64],
    names: Sequence[str],
    importance: Mapping[str, float],
    thresholds: Mapping[str, float],
    *,
    top: int = TOP_FEATURES,
) -> Reference:
    """The reference of the holdout rows ``X`` (columns ``names``) and their 0–1000
    ``scores``; the features are the ``top`` of ``importance`` (gain > 0 only)."""
    score_edges = np.concatenate([_deciles(scores), list(thresholds.values())])
    chosen = [n for n, g in sorted(importance.items(), key=lambda p: -p[1]) if g > 0][:top]
    features = tuple(
        _binned(name, X[:, list(names).index(name)], _deciles(X[:, list(names).index(name)]))
        for name in chosen
    )
    return Reference(_binned("score", scores, score_edges), features, int(scores.size))


def _deciles(values: NDArray[np.float64]) -> NDArray[np.float64]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(0)
    return np.quantile(finite, DECILES)


def _binned(name: str, values: NDArray[np.float64], edges: NDArray[np.float64]) -> Binned:
    cuts = np.unique(np.asarray(edges, dtype=np.float64))
    counts = bin_counts(values, cuts)
    total = max(int(counts.sum()), 1)
    return Binned(
        name,
        tuple(float(e) for e in cuts),
        tuple(round(float(c) / total, 6) for c in counts),
    )
