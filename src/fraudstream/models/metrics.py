"""Evaluation metrics: threshold-free (AUC ROC, Average Precision), the Handbook's Card
Precision@k, and the operational figures at a threshold.

Card Precision@k (Le Borgne et al., section 4.2.3), as defined there: each day, every card
(the Handbook's ``CUSTOMER_ID``) gets the highest score of its transactions that day and
is fraudulent if any of them is; the ``k`` riskiest cards are the investigators' daily
budget, and the day's precision is the number of fraudulent cards among them divided by
``k``. Cards found fraudulent on an earlier day are taken out of the later days (they are
blocked already). The metric is the mean over the days.

>>> import numpy as np
>>> day = np.array([0, 0, 0, 1, 1]); card = np.array([1, 2, 3, 1, 2])
>>> score = np.array([0.9, 0.8, 0.1, 0.9, 0.7]); fraud = np.array([1, 0, 0, 1, 0])
>>> card_precision_at_k(day, card, score, fraud, k=1)
0.5
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.models.errors import ModelError

Array = NDArray[Any]


def roc_auc(y: Array, score: Array) -> float:
    """Area under the ROC curve (ties count one half), via the rank-sum statistic."""
    y = np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _average_ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    first = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.concatenate([starts[1:], [len(x)]])
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = mean_rank[group]
    return ranks


def average_precision(y: Array, score: Array) -> float:
    """Σ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds, highest first (the step-wise
    area under the precision-recall curve, without interpolation)."""
    y = np.asarray(y, dtype=bool)
    pos = int(y.sum())
    if pos == 0:
        return float("nan")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, t = np.asarray(score)[order], y[order]
    last = np.concatenate([s[1:] != s[:-1], [True]])
    tp = np.cumsum(t)[last]
    n = (np.arange(1, len(s) + 1))[last]
    precision = tp / n
    recall_gain = np.diff(np.concatenate([[0], tp])) / pos
    return float((recall_gain * precision).sum())


def card_precision_at_k(
    day: Array, card: Array, score: Array, fraud: Array, *, k: int = 100, drop_detected: bool = True
) -> float:
    """The Handbook's Card Precision@k, averaged over days (see the module docs)."""
    return float(
        np.mean(card_precision_per_day(day, card, score, fraud, k=k, drop_detected=drop_detected))
    )


def card_precision_per_day(
    day: Array, card: Array, score: Array, fraud: Array, *, k: int = 100, drop_detected: bool = True
) -> list[float]:
    if k < 1:
        raise ModelError(f"k: must be >= 1, got {k}")
    day, card = np.asarray(day), np.asarray(card)
    score, fraud = np.asarray(score, dtype=np.float64), np.asarray(fraud, dtype=bool)
    detected: set[Any] = set()
    out: list[float] = []
    for d in np.unique(day):
        m = day == d
        cards, inv = np.unique(card[m], return_inverse=True)
        best = np.full(len(cards), -np.inf)
        np.maximum.at(best, inv, score[m])
        bad = np.zeros(len(cards), dtype=bool)
        np.logical_or.at(bad, inv, fraud[m])
        keep = np.array([c not in detected for c in cards.tolist()], dtype=bool)
        cards, best, bad = cards[keep], best[keep], bad[keep]
        top = np.argsort(-best, kind="mergesort")[:k]
        hits = cards[top][bad[top]]
        out.append(len(hits) / k)
        if drop_detected:
            detected.update(hits.tolist())
    return out


def at_threshold(y: Array, score: Array, amount: Array, threshold: float) -> dict[str, float]:
    """Precision, recall, F1, review rate and fraud amount caught when ``score >= threshold``
    is flagged."""
    y = np.asarray(y, dtype=bool)
    flag = np.asarray(score) >= threshold
    amount = np.asarray(amount, dtype=np.float64)
    tp = int((flag & y).sum())
    precision = tp / flag.sum() if flag.any() else 0.0
    recall = tp / y.sum() if y.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fraud_amount = float(amount[y].sum())
    caught = float(amount[flag & y].sum())
    return {
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "review_rate": float(flag.mean()) if len(flag) else 0.0,
        "flagged": int(flag.sum()),
        "fraud_amount": fraud_amount,
        "fraud_amount_caught": caught,
        "fraud_amount_caught_share": caught / fraud_amount if fraud_amount else 0.0,
    }


def share_threshold(score: Array, share: float) -> float:
    """The threshold that flags the ``share`` of payments scored highest (ties at it flag
    together): a fixed review rate, to compare models and scenarios at one operating point
    whatever each model's own thresholds."""
    ranked = np.sort(np.asarray(score, dtype=np.float64))[::-1]
    if not len(ranked):
        return float("inf")
    return float(ranked[max(1, int(len(ranked) * share)) - 1])


def recall_by_scenario(scenario: Array, score: Array, threshold: float) -> dict[str, float]:
    """Share of each fraud scenario's transactions flagged at ``threshold``."""
    from fraudstream.simulate.scenarios import scenario_name

    scenario = np.asarray(scenario)
    flag = np.asarray(score) >= threshold
    out: dict[str, float] = {}
    for value in sorted(set(scenario.tolist()) - {0}):
        m = scenario == value
        out[_name(int(value), scenario_name)] = float(flag[m].mean())
    return out


def _name(value: int, namer: Any) -> str:
    try:
        return str(namer(value))
    except ValueError:
        return f"scenario_{value}"


def best_f1_threshold(y: Array, score: Array) -> float:
    """The score threshold with the highest F1 (ties: the highest threshold)."""
    y = np.asarray(y, dtype=bool)
    if not y.any():
        raise ModelError("threshold: no fraud to choose a threshold from")
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, t = np.asarray(score, dtype=np.float64)[order], y[order]
    last = np.concatenate([s[1:] != s[:-1], [True]])
    tp = np.cumsum(t)[last]
    n = np.arange(1, len(s) + 1)[last]
    f1 = 2 * tp / (n + y.sum())
    return float(s[last][int(np.argmax(f1))])
