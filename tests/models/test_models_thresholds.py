"""Review and block thresholds from a holdout's scores: a model precise enough to block at
its best F1 still leaves analysts a review band."""

from __future__ import annotations

import numpy as np

from fraudstream.models.train import MAX_REVIEW_SHARE, thresholds_for


def holdout(
    band_frauds: int, band_genuine: int, *, mixed: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """10,000 genuine payments scored below 400, 100 frauds at 900 and above, and a band at
    600–700: its genuine payments above its frauds, or (``mixed``) all interleaved."""
    rng = np.random.default_rng(7)
    low = rng.uniform(0, 400, 10_000)
    top = rng.uniform(900, 1000, 100)
    if mixed:
        band = rng.uniform(600, 700, band_frauds + band_genuine)
        band_y = rng.permutation(np.r_[np.ones(band_frauds), np.zeros(band_genuine)])
    else:
        band = np.r_[rng.uniform(600, 650, band_frauds), rng.uniform(650, 700, band_genuine)]
        band_y = np.r_[np.ones(band_frauds), np.zeros(band_genuine)]
    y = np.r_[np.zeros(10_000), np.ones(100), band_y].astype(bool)
    return y, np.r_[low, top, band]


def best_f1(y: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(-score)
    f1 = 2 * np.cumsum(y[order]) / (np.arange(1, len(y) + 1) + y.sum())
    return float(score[order][int(np.argmax(f1))])


def flagged(score: np.ndarray, threshold: float) -> int:
    return int((score >= threshold).sum())


def test_a_model_blocking_at_its_best_f1_gets_a_review_band_below() -> None:
    """Best F1 is the clean top (100 of 100): it blocks there, as before; the band below, at
    130 frauds in 190 payments, goes to review."""
    y, score = holdout(band_frauds=30, band_genuine=60)
    t = thresholds_for(y, score)
    assert t["block"] == best_f1(y, score) >= 900
    assert t["review"] == score[y & (score < 900)].min()
    assert flagged(score, t["review"]) == 190


def test_the_review_band_stops_at_its_share_of_the_payments() -> None:
    y, score = holdout(band_frauds=60, band_genuine=120)  # 160 in 280 flagged are fraud
    t = thresholds_for(y, score)
    assert t["review"] < t["block"] == best_f1(y, score)
    blocked = flagged(score, t["block"])
    assert flagged(score, t["review"]) == blocked + int(len(score) * MAX_REVIEW_SHARE)


def test_a_model_whose_best_f1_is_below_block_precision_keeps_it() -> None:
    """The band exists already: review stays at the best F1."""
    y, score = holdout(band_frauds=60, band_genuine=40, mixed=True)
    t = thresholds_for(y, score)
    assert t["review"] == best_f1(y, score) < t["block"]
    assert y[score >= t["review"]].mean() < 0.9
