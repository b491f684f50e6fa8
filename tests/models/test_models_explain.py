from __future__ import annotations

import numpy as np

from fraudstream.models import TrainedModel
from fraudstream.models.explain import describe, reason, reason_codes


def test_reasons_read_like_sentences() -> None:
    assert reason("customer_amount_ratio_mean_30d", 5.23) == (
        "customer_amount_ratio_mean_30d: amount 5.2× the customer's 30-day mean"
    )
    assert describe("customer_tx_count_1h", 4) == "4 transactions by this customer in 1h"
    assert describe("terminal_fraud_count_30d", 3) == "3 known frauds at this terminal (30d window)"
    assert describe("customer_seconds_since_last_tx", 120) == (
        "2 min since the customer's previous transaction"
    )
    assert describe("tx_amount", float("nan")) == "no history"
    assert describe("something_new", 1.5) == "1.5"


def test_reason_codes_keep_the_largest_positive_contributions() -> None:
    names = ["tx_amount", "tx_is_night", "customer_tx_count_1h"]
    contrib = np.array([[0.5, -1.0, 2.0, -3.0], [-0.1, -0.2, -0.3, 0.0]])
    X = np.array([[300.0, 1.0, 4.0], [10.0, 0.0, 1.0]])
    codes = reason_codes(contrib, X, names, top=2)
    assert codes[0] == [
        "customer_tx_count_1h: 4 transactions by this customer in 1h",
        "tx_amount: amount 300.00",
    ]
    assert codes[1] == []


def test_path_contributions_sum_to_the_log_odds(trained: TrainedModel) -> None:
    assert trained.dataset is not None
    X = trained.dataset.matrix()[-300:]
    fast = trained.bundle.contributions(X)
    exact = trained.bundle.contributions(X, exact=True)
    raw = trained.bundle.raw(X)
    np.testing.assert_allclose(fast.sum(axis=1), raw, atol=1e-6)
    np.testing.assert_allclose(exact.sum(axis=1), raw, atol=1e-6)
    # The two attributions mostly agree on the strongest feature of risky rows.
    risky = np.argsort(-raw)[:20]
    same = (fast[risky, :-1].argmax(axis=1) == exact[risky, :-1].argmax(axis=1)).mean()
    assert same >= 0.5
