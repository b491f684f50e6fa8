"""A rolling window of live bin counts, and the drift figures of such counts.

Each worker process keeps a `DriftWindow`: per scored batch, the bin counts of the base
scores and of the reference's top features (one `np.searchsorted` and one `np.bincount`
per distribution), kept per batch in a queue and summed. The window holds the **last
`WINDOW_ROWS` (10,000) transactions the process scored, in whole batches** (of at least
`BIN_ROWS`: small ones are binned together): a count, not a
time span, so its figures are equally trustworthy at 50 and at 5,000 tx/s (and it does not
empty when traffic stops). The counts of all distributions sit end to end in one flat
vector (`Layout`), which is also what a worker publishes for the fleet figures (`fleet`).

Below `MIN_ROWS` rows a PSI is mostly noise and is not given (``None``).
"""

from __future__ import annotations

from collections import deque

import msgspec
import numpy as np
from numpy.typing import NDArray

from fraudstream.drift.psi import Level, level, psi
from fraudstream.drift.reference import Binned, Reference

WINDOW_ROWS = 10_000
MIN_ROWS = 1_000
BIN_ROWS = 256
"""Rows binned at a time (`DriftWindow.observe`): a worker's batch at once, an API
process's lone transactions 256 together."""


class Figure(msgspec.Struct, frozen=True):
    """One distribution's PSI against its reference (None: too few rows yet)."""

    name: str
    psi: float | None
    level: Level | None


class DriftFigures(msgspec.Struct, frozen=True):
    """The drift of a window (or of the fleet's windows summed) for one model version."""

    model_version: str
    rows: int
    score: Figure
    features: list[Figure]

    def worst(self) -> float | None:
        """The largest PSI of the score and the features (None: not measured yet)."""
        values = [f.psi for f in (self.score, *self.features) if f.psi is not None]
        return max(values) if values else None


class Layout:
    """Where each distribution's bins sit in a flat counts vector: score first, then the
    features in the reference's order."""

    def __init__(self, reference: Reference) -> None:
        self.parts: list[Binned] = [reference.score, *reference.features]
        sizes = [len(p.shares) for p in self.parts]
        self.bounds = np.cumsum([0, *sizes]).tolist()

    @property
    def size(self) -> int:
        return int(self.bounds[-1])

    def split(self, flat: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        return [flat[a:b] for a, b in zip(self.bounds, self.bounds[1:], strict=False)]


def figures(
    reference: Reference, version: str, flat: NDArray[np.int64], rows: int, min_rows: int
) -> DriftFigures:
    """The PSI of each distribution in ``flat`` (a `Layout` of ``reference``)."""
    layout = Layout(reference)
    found = []
    for part, counts in zip(layout.parts, layout.split(flat), strict=True):
        value = round(psi(part.shares, counts), 4) if rows >= min_rows and counts.any() else None
        found.append(Figure(part.name, value, None if value is None else level(value)))
    return DriftFigures(version, rows, found[0], found[1:])


class DriftWindow:
    """The bin counts of the last ``capacity`` rows one process scored with one model.

    Args:
        reference: the model's reference.
        version: the model version (figures carry it).
        columns: the live feature matrix's column names (`FeatureEngine.names`); a
            reference feature not among them is counted as missing.
    """

    def __init__(
        self,
        reference: Reference,
        version: str,
        columns: list[str],
        *,
        capacity: int = WINDOW_ROWS,
        min_rows: int = MIN_ROWS,
    ) -> None:
        self.reference = reference
        self.version = version
        self.capacity = capacity
        self.min_rows = min_rows
        self.layout = Layout(reference)
        self._index = [columns.index(n) if n in columns else -1 for n in reference.feature_names]
        self._wanted = np.array([max(j, 0) for j in self._index], dtype=np.int64)
        self._batches: deque[tuple[int, NDArray[np.int64]]] = deque()
        self._counts = np.zeros(self.layout.size, dtype=np.int64)
        self._rows = 0
        self._pending: list[tuple[NDArray[np.float64], NDArray[np.float64]]] = []
        self._pending_rows = 0

    @property
    def counts(self) -> NDArray[np.int64]:
        """The window's bin counts, every distribution end to end (`Layout`)."""
        self._flush()
        return self._counts

    @property
    def rows(self) -> int:
        self._flush()
        return self._rows

    def observe(self, features: NDArray[np.float64], scores: NDArray[np.float64]) -> None:
        """Count one scored batch (``features``: rows × live columns). The rows are binned
        `BIN_ROWS` at a time (or when the counts are read): an API process scores one
        transaction at a time, and binning each one on its own (a ``searchsorted`` and a
        ``bincount`` per distribution) cost ~50 µs of every request."""
        self._pending.append((features[:, self._wanted], np.asarray(scores, dtype=np.float64)))
        self._pending_rows += int(scores.shape[0])
        if self._pending_rows >= BIN_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Bin the pending rows as one batch, then drop the oldest batches while the rest
        still hold ``capacity`` rows."""
        if not self._pending:
            return
        features = np.concatenate([f for f, _ in self._pending])
        scores = np.concatenate([s for _, s in self._pending])
        self._pending, self._pending_rows = [], 0
        n = int(scores.shape[0])
        parts = [self.reference.score.counts(scores)]
        for k, (binned, j) in enumerate(zip(self.reference.features, self._index, strict=True)):
            column = features[:, k] if j >= 0 else np.full(n, np.nan)
            parts.append(binned.counts(column))
        batch = np.concatenate(parts)
        self._batches.append((n, batch))
        self._counts += batch
        self._rows += n
        while self._batches and self._rows - self._batches[0][0] >= self.capacity:
            old_n, old = self._batches.popleft()
            self._counts -= old
            self._rows -= old_n

    def figures(self) -> DriftFigures:
        return figures(self.reference, self.version, self.counts, self.rows, self.min_rows)
