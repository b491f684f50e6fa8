"""Reason codes: the features that pushed a score up, in words.

LightGBM's ``pred_contrib`` (SHAP values of the trees, exact and computed in batch) gives each
feature's contribution to each row's log-odds; the ``top`` largest positive ones become
``name: text`` codes, the text rendered from the feature's generated name and its value:

>>> print(reason("customer_amount_ratio_mean_30d", 5.23))
customer_amount_ratio_mean_30d: amount 5.2× the customer's 30-day mean
>>> print(reason("terminal_risk_7d_delay7d", 0.25))
terminal_risk_7d_delay7d: 25.0% of the terminal's transactions fraudulent (7d window, 7d ago)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

_WINDOW = {"h": "hour", "d": "day"}
_AGG = re.compile(
    r"^(?P<entity>customer|card|terminal|merchant|device|ip)_(?P<agg>tx_count|amount_sum|amount_mean"
    r"|amount_std|fraud_count|risk)_(?P<w>\d+[mhd])(?:_delay(?P<delay>\d+[mhd]))?(?:_(?P<where>\w+))?$"
)
_RATIO = re.compile(
    r"^customer_amount_(?P<kind>ratio_mean|zscore|ratio_median_prev|ratio_max_prev)_(?P<w>\d+)d$"
)
_RATIO_TEXT = {
    "ratio_mean": "amount {v:.1f}× the customer's {w}-day mean",
    "zscore": "amount {v:.1f} standard deviations from the customer's {w}-day mean",
    "ratio_median_prev": "amount {v:.1f}× the customer's {w}-day median",
    "ratio_max_prev": "amount {v:.1f}× the customer's {w}-day maximum",
}
_FIXED = {
    "tx_amount": "amount {v:.2f}",
    "tx_is_weekend": "weekend transaction",
    "tx_is_night": "night-time transaction",
    "customer_seconds_since_last_tx": "{m:.0f} min since the customer's previous transaction",
    "customer_distance_from_home": "{v:.1f} from the customer's usual location",
    "customer_distance_from_last": "{v:.1f} from the customer's previous location",
    "customer_speed_from_last_kmh": "{v:.0f} km/h travel from the previous transaction",
    "customer_impossible_travel": "impossible travel from the previous transaction",
    "terminal_days_since_first_fraud": "first known fraud at this terminal {v:.0f} days ago",
    "terminal_days_since_last_fraud": "last known fraud at this terminal {v:.0f} days ago",
}


def reason(name: str, value: float) -> str:
    """``name: readable text`` for one feature value."""
    return f"{name}: {describe(name, value)}"


def describe(name: str, value: float) -> str:
    if not np.isfinite(value):
        return "no history"
    if name in _FIXED:
        return _FIXED[name].format(v=value, m=value / 60)
    if m := _RATIO.match(name):
        return _RATIO_TEXT[m["kind"]].format(v=value, w=m["w"])
    if m := _AGG.match(name):
        return _aggregate(m, value)
    return f"{value:g}"


def _aggregate(m: re.Match[str], v: float) -> str:
    entity, agg, w = m["entity"], m["agg"], m["w"]
    span = f"{w} window" + (f", {m['delay']} ago" if m["delay"] else "")
    if agg == "tx_count":
        return f"{v:.0f} transactions by this {entity} in {w}"
    if agg == "amount_sum":
        return f"{v:.2f} spent by this {entity} in {w}"
    if agg == "amount_mean":
        return f"this {entity}'s mean amount {v:.2f} over {w}"
    if agg == "amount_std":
        return f"this {entity}'s amount deviation {v:.2f} over {w}"
    if agg == "fraud_count":
        return f"{v:.0f} known frauds at this {entity} ({span})"
    return f"{v:.1%} of the {entity}'s transactions fraudulent ({span})"


def reason_codes(
    contributions: NDArray[np.float64],
    X: NDArray[np.float64],
    names: Sequence[str],
    top: int = 3,
) -> list[list[str]]:
    """Per row, the ``top`` features with the largest positive contribution, as reasons.

    Args:
        contributions: ``(n, features + 1)`` from ``Booster.predict(pred_contrib=True)``
            (the last column is the bias, ignored).
        X: the ``(n, features)`` values the contributions were computed for.
    """
    c = contributions[:, : len(names)]
    k = min(top, len(names))
    if k <= 0:
        return [[] for _ in range(len(c))]
    idx = np.argpartition(-c, k - 1, axis=1)[:, :k]
    part = np.take_along_axis(c, idx, axis=1)
    order = np.argsort(-part, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    out: list[list[str]] = []
    for row, cols in enumerate(idx.tolist()):
        out.append([reason(names[j], float(X[row, j])) for j in cols if c[row, j] > 0])
    return out


class PathExplainer:
    """Fast per-feature contributions: each split on a row's path credits its feature with
    the change in the node's expected log-odds (Saabas' path attribution, "treeinterpreter").

    Like TreeSHAP (``pred_contrib``) the contributions plus the bias sum exactly to the raw
    score; unlike it, they are computed from the leaf indices (``pred_leaf``, as fast as a
    prediction) and a precomputed table of the ≤ depth (feature, change) pairs of every
    leaf's path, so the cost is a gather and a ``bincount``: ~100× cheaper than TreeSHAP
    (see ``benchmarks/bench_models.py``), cheap enough to explain every decision.
    """

    def __init__(self, booster: Any) -> None:
        dump = booster.dump_model()
        self.n_features = int(dump["max_feature_idx"]) + 1
        paths: list[list[list[tuple[int, float]]]] = []
        self.bias = 0.0
        for tree in dump["tree_info"]:
            root = tree["tree_structure"]
            leaves: dict[int, list[tuple[int, float]]] = {}
            if "leaf_index" in root:
                self.bias += float(root["leaf_value"])
                leaves[0] = []
            else:
                self.bias += float(root["internal_value"])
                _walk(root, [], leaves)
            paths.append([leaves[i] for i in range(len(leaves))])
        depth = max((len(p) for tree in paths for p in tree), default=1) or 1
        sizes = [len(t) for t in paths]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        total = int(sum(sizes))
        self.feature = np.full((total, depth), self.n_features, dtype=np.int64)
        self.change = np.zeros((total, depth), dtype=np.float64)
        row = 0
        for tree in paths:
            for path in tree:
                for j, (f, delta) in enumerate(path):
                    self.feature[row, j], self.change[row, j] = f, delta
                row += 1

    def contributions(self, leaves: NDArray[np.int64]) -> NDArray[np.float64]:
        """``(n, features + 1)`` from ``booster.predict(X, pred_leaf=True)``; last = bias."""
        n = leaves.shape[0]
        idx = leaves.astype(np.int64) + self.offsets[None, : leaves.shape[1]]
        width = self.n_features + 1
        keys = self.feature[idx] + (np.arange(n) * width)[:, None, None]
        sums = np.bincount(keys.ravel(), weights=self.change[idx].ravel(), minlength=n * width)
        out = np.asarray(sums, dtype=np.float64).reshape(n, width)
        out[:, -1] = self.bias
        return out


def _walk(
    node: dict[str, Any], path: list[tuple[int, float]], leaves: dict[int, list[tuple[int, float]]]
) -> None:
    value = float(node["internal_value"])
    for side in ("left_child", "right_child"):
        child = node[side]
        child_value = float(
            child["leaf_value"] if "leaf_index" in child else child["internal_value"]
        )
        step = [*path, (int(node["split_feature"]), child_value - value)]
        if "leaf_index" in child:
            leaves[int(child["leaf_index"])] = step
        else:
            _walk(child, step, leaves)
