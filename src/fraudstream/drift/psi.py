"""The population stability index (PSI) of binned counts, and how to read it.

PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ) over the bins, where eᵢ is the share of the expected
(reference) population in bin i and aᵢ that of the actual (live) one. It is zero for
identical shares and grows with every bin that moved, in either direction. The usual
reading, used by the console's colours and as the default alert threshold:

- below 0.1: **stable**;
- 0.1 to 0.25: **moderate** shift, worth a look;
- above 0.25: **significant** shift (the default ``drift_psi_alert``).

A bin empty on one side would make the logarithm infinite, so every share is raised to at
least `EPSILON` (1e-4, i.e. one row in 10,000) before the sum: a bin that appeared or
vanished adds a large but finite term (a 10 % bin that empties adds ≈ 0.69).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fraudstream.errors import DriftError

EPSILON = 1e-4
"""The smallest share a bin counts with (an empty bin's share becomes this)."""
MODERATE = 0.1
SIGNIFICANT = 0.25
Level = Literal["stable", "moderate", "significant"]


def shares(counts: ArrayLike, *, what: str = "counts") -> NDArray[np.float64]:
    """Counts (or weights) as shares summing to 1, each at least `EPSILON`.

    Raises:
        DriftError: negative counts, or nothing counted at all.
    """
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or (values < 0).any():
        raise DriftError(f"{what}: must be one row of non-negative counts, got {values!r}")
    total = values.sum()
    if not total > 0:
        raise DriftError(f"{what}: nothing counted (all {values.size} bins are empty)")
    floored: NDArray[np.float64] = np.maximum(values / total, EPSILON)
    return floored


def psi(expected_counts: ArrayLike, actual_counts: ArrayLike) -> float:
    """The PSI of ``actual_counts`` against ``expected_counts`` (same bins, any scale).

    >>> psi([50, 50], [50, 50])
    0.0
    >>> round(psi([50, 50], [25, 75]), 4)
    0.2747
    >>> round(psi([0.5, 0.5], [250, 750]), 4)   # shares and counts mix: only shares matter
    0.2747

    Raises:
        DriftError: the bins differ in number, or either side counted nothing.
    """
    expected = shares(expected_counts, what="expected_counts")
    actual = shares(actual_counts, what="actual_counts")
    if expected.size != actual.size:
        raise DriftError(f"actual_counts: {actual.size} bins, the reference has {expected.size}")
    return float(max(0.0, np.sum((actual - expected) * np.log(actual / expected))))


def level(value: float) -> Level:
    """The usual reading of a PSI.

    >>> level(0.05), level(0.1), level(0.3)
    ('stable', 'moderate', 'significant')
    """
    if value < MODERATE:
        return "stable"
    return "moderate" if value <= SIGNIFICANT else "significant"


def bin_counts(
    values: ArrayLike, edges: Sequence[float] | NDArray[np.float64]
) -> NDArray[np.int64]:
    """Counts of ``values`` in the bins of ``edges``: ``len(edges) + 2`` bins, bin i holding
    the values in ``[edges[i-1], edges[i])`` (open at both ends), the last one the missing
    values (NaN). One `np.searchsorted` and one `np.bincount`.

    >>> bin_counts([0.0, 1.0, 1.5, 5.0, float("nan")], [1.0, 2.0]).tolist()
    [1, 2, 1, 1]
    """
    x = np.asarray(values, dtype=np.float64)
    cuts = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(cuts, x, side="right")
    index[np.isnan(x)] = cuts.size + 1
    return np.bincount(index, minlength=cuts.size + 2).astype(np.int64)
