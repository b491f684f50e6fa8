"""Isolation forest on genuine traffic, scored by our own compiled code.

scikit-learn fits the trees; we keep only their arrays (children, split feature, threshold,
leaf size), so the artifact needs no pickle, and score a batch with one compiled walk
(numba) over every row and tree instead of one Python call per tree.
`IsolationForestModel.score` equals ``-IsolationForest.score_samples`` (a test checks it):
``2 ** (-E[h(x)] / c(psi))``, higher = more anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
EULER = 0.5772156649015329


@njit(cache=True)
def _mean_paths(X, columns, left, right, threshold, feature, leaf_value, roots, depth):  # type: ignore[no-untyped-def]
    """Mean path length of each row of ``X`` over the trees, compiled.

    A row's values are read as scikit-learn reads them: NaN as 0, then rounded to float32.
    Leaves loop to themselves (`IsolationForestModel._walk`), so every row takes exactly
    ``depth`` steps in every tree and the rows of a tree are walked side by side, one
    level at a time: their steps are independent, and the processor overlaps them. Walked
    one row to its leaf at a time (a loop ending where the row's path does), a forest of
    100 trees of depth 8 took 5.4 µs a row at 500 rows (7 µs at 16), against 1.8 µs this
    way (1.9 µs at 16), side by side on this project's 2-core host."""
    n, k, trees = X.shape[0], columns.shape[0], roots.shape[0]
    x = np.empty((n, k), dtype=np.float64)
    for i in range(n):
        for j in range(k):
            v = X[i, columns[j]]
            x[i, j] = 0.0 if np.isnan(v) else np.float64(np.float32(v))
    total = np.zeros(n)
    node = np.empty(n, dtype=np.int64)
    for t in range(trees):  # tree by tree: its nodes stay in cache
        node[:] = roots[t]
        for _ in range(depth):
            for i in range(n):
                at = node[i]
                node[i] = left[at] if x[i, feature[at]] <= threshold[at] else right[at]
        for i in range(n):
            total[i] += leaf_value[node[i]]
    return total / trees


def average_path_length(n: NDArray[Any]) -> F64:
    """c(n): the mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    two = n == 2
    big = n > 2
    out[two] = 1.0
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER) - 2.0 * (n[big] - 1.0) / n[big]
    return out


@dataclass(frozen=True)
class IsolationForestModel:
    """All trees in flat arrays; ``roots[i]`` is tree i's first node."""

    columns: I64
    """Columns of the full feature matrix the forest reads."""
    left: I64
    right: I64
    feature: I64
    threshold: F64
    leaf_value: F64
    """At leaves: depth + c(samples in the leaf); the path length of a point ending there."""
    roots: I64
    depth: int
    norm: float
    """c(max_samples), the expected path length that scores 0.5."""

    def score(self, X: F64) -> F64:
        """Anomaly score in (0, 1] per row of the full feature matrix (higher = stranger)."""
        left, right, threshold, depth = self._walk
        x = np.asarray(X, dtype=np.float64)
        mean_path = _mean_paths(
            x, self.columns, left, right, threshold, self.feature, self.leaf_value, self.roots,
            depth,
        )  # fmt: skip
        return np.asarray(2.0 ** (-mean_path / self.norm), dtype=np.float64)

    @cached_property
    def _walk(self) -> tuple[I64, I64, F64, int]:
        """The children and thresholds with every leaf its own child whatever the value
        (threshold +inf: ``x <= inf`` holds for every value read, NaN being read as 0),
        and the depth of the deepest leaf: `_mean_paths` walks every row that many steps."""
        leaf = self.left < 0
        at = np.flatnonzero(leaf)
        left, right, threshold = self.left.copy(), self.right.copy(), self.threshold.copy()
        left[at] = right[at] = at
        threshold[at] = np.inf
        depth, level = 0, self.roots[~leaf[self.roots]]
        while level.size:  # one level of internal nodes at a time
            if depth > len(self.left):
                raise ValueError("isolation forest arrays do not form trees (a cycle)")
            depth += 1
            children = np.concatenate([self.left[level], self.right[level]])
            level = np.unique(children[~leaf[children]])
        return left, right, threshold, depth

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "columns": self.columns,
            "left": self.left,
            "right": self.right,
            "feature": self.feature,
            "threshold": self.threshold,
            "leaf_value": self.leaf_value,
            "roots": self.roots,
            "params": np.array([self.depth, self.norm], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, NDArray[Any]]) -> IsolationForestModel:
        return cls(
            a["columns"].astype(np.int64),
            a["left"].astype(np.int64),
            a["right"].astype(np.int64),
            a["feature"].astype(np.int64),
            a["threshold"].astype(np.float64),
            a["leaf_value"].astype(np.float64),
            a["roots"].astype(np.int64),
            int(a["params"][0]),
            float(a["params"][1]),
        )


def fit_isolation_forest(
    X: F64, *, trees: int = 100, max_samples: int = 256, seed: int = 0, max_rows: int = 200_000
) -> tuple[IsolationForestModel, Any]:
    """Fit on genuine rows (``X`` = the full feature matrix); constant columns are left out.

    Returns the flat model and the scikit-learn estimator (for tests and comparisons).
    """
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(seed)
    if len(X) > max_rows:
        X = X[rng.choice(len(X), max_rows, replace=False)]
    X = np.nan_to_num(X)
    columns = np.flatnonzero(X.max(axis=0) > X.min(axis=0)).astype(np.int64)
    sub = X[:, columns]
    forest = IsolationForest(
        n_estimators=trees, max_samples=min(max_samples, len(sub)), random_state=seed
    )
    forest.fit(sub)
    return _flatten(forest, columns), forest


def _flatten(forest: Any, columns: I64) -> IsolationForestModel:
    parts: dict[str, list[NDArray[Any]]] = {k: [] for k in ("l", "r", "f", "t", "v")}
    roots, offset, depth = [], 0, 0
    for est, feats in zip(forest.estimators_, forest.estimators_features_, strict=True):
        t = est.tree_
        size = t.node_count
        node_depth = _depths(t.children_left, t.children_right)
        depth = max(depth, int(node_depth.max()))
        leaf = t.children_left < 0
        parts["l"].append(np.where(leaf, -1, t.children_left + offset))
        parts["r"].append(np.where(leaf, -1, t.children_right + offset))
        parts["f"].append(np.where(leaf, 0, np.asarray(feats)[np.maximum(t.feature, 0)]))
        parts["t"].append(t.threshold.astype(np.float64))
        samples = t.n_node_samples.astype(np.float64)
        parts["v"].append(np.where(leaf, node_depth + average_path_length(samples), 0.0))
        roots.append(offset)
        offset += size
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return IsolationForestModel(
        columns=columns,
        left=cat["l"].astype(np.int64),
        right=cat["r"].astype(np.int64),
        feature=cat["f"].astype(np.int64),
        threshold=cat["t"],
        leaf_value=cat["v"],
        roots=np.array(roots, dtype=np.int64),
        depth=depth,
        norm=float(average_path_length(np.array([forest.max_samples_]))[0]),
    )


def _depths(left: NDArray[Any], right: NDArray[Any]) -> F64:
    depth = np.zeros(len(left))
    for node in range(len(left)):  # parents come before children in sklearn's trees
        if left[node] >= 0:
            depth[left[node]] = depth[right[node]] = depth[node] + 1
    return depth
