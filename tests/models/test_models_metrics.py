from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudstream.models.metrics import (
    at_threshold,
    average_precision,
    best_f1_threshold,
    card_precision_at_k,
    card_precision_per_day,
    recall_by_scenario,
    roc_auc,
    share_threshold,
)

labels_and_scores = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.integers(0, 6), min_size=n, max_size=n),  # many ties
    )
)


@settings(max_examples=60, deadline=None)
@given(labels_and_scores)
def test_auc_and_ap_match_scikit_learn(data: tuple[list[bool], list[int]]) -> None:
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    if y.all() or not y.any():
        return
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_card_precision_divides_by_k_and_drops_detected_cards() -> None:
    day = np.array([0, 0, 0, 0, 1, 1, 1])
    card = np.array(["a", "a", "b", "c", "a", "b", "c"])
    score = np.array([0.1, 0.9, 0.8, 0.2, 0.99, 0.5, 0.4])
    fraud = np.array([0, 1, 0, 0, 1, 1, 0])
    # Day 0: card a (max 0.9, fraud) and b (0.8, genuine) are the top 2 -> 1/2.
    # Day 1: a was detected on day 0 and is dropped; b (fraud) and c are the top 2 -> 1/2.
    assert card_precision_per_day(day, card, score, fraud, k=2) == [0.5, 0.5]
    # Without dropping, a is counted again on day 1: top-1 precision 1 both days.
    assert card_precision_at_k(day, card, score, fraud, k=1, drop_detected=False) == 1.0
    # With dropping, day 1's top card is b (fraud): still 1; with k=100 it is hits / 100.
    assert card_precision_at_k(day, card, score, fraud, k=100) == pytest.approx(0.01)


def test_operating_point_figures() -> None:
    y = np.array([1, 1, 0, 0, 0], dtype=bool)
    score = np.array([900, 300, 800, 100, 0.0])
    amount = np.array([100.0, 50.0, 10.0, 10.0, 10.0])
    op = at_threshold(y, score, amount, 500)
    assert op["precision"] == 0.5 and op["recall"] == 0.5 and op["review_rate"] == 0.4
    assert op["fraud_amount_caught"] == 100.0 and op["fraud_amount_caught_share"] == pytest.approx(
        2 / 3
    )
    assert best_f1_threshold(y, score) == 300.0


def test_recall_by_scenario_names_the_handbook_scenarios() -> None:
    scen = np.array([0, 1, 1, 2, 3])
    out = recall_by_scenario(scen, np.array([0, 900, 100, 900, 900.0]), 500)
    assert out == {"high_amount": 0.5, "compromised_terminal": 1.0, "compromised_customer": 1.0}


def test_recall_by_scenario_names_the_attacks_handbook_data_can_show() -> None:
    scen = np.array([0, 8, 9, 9, 10])
    out = recall_by_scenario(scen, np.array([0, 900, 100, 900, 900.0]), 500)
    assert out == {"low_and_slow_takeover": 1.0, "quiet_skimming": 0.5, "bust_out": 1.0}


def test_share_threshold_flags_the_top_share() -> None:
    score = np.arange(1000, dtype=np.float64)[::-1]  # 999 … 0
    assert share_threshold(score, 0.01) == 990.0  # 999 … 990: ten flagged
    assert (score >= share_threshold(score, 0.01)).sum() == 10
    assert share_threshold(score, 0.0001) == 999.0  # at least one
    tied = np.array([5.0, 5.0, 5.0, 1.0])
    assert (tied >= share_threshold(tied, 0.25)).sum() == 3  # ties flag together
