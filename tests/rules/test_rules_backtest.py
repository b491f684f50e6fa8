"""Backtest figures on a hand-made labelled history (every expected number computed by hand)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from fraudstream.rules import (
    RuleEvaluationError,
    parse_ruleset,
)
from fraudstream.rules.backtest import ModelScores, backtest
from fraudstream.rules.policy import Thresholds
from rulekit import SCHEMA

HISTORY = pl.DataFrame(
    {
        "amount": [500.0, 150, 120, 60, 20, 300, 80, 10, 250, 40],
        "customer_tx_count_1h": [6, 0, 0, 7, 9, 1, 0, 0, 5, None],
        "is_fraud": [1, 1, 0, 0, 1, 0, 1, 0, 1, 0],
        "ip": ["1.1.1.1"] * 10,
    }
)
# frauds: rows 0 1 4 6 8 -> 5 frauds, amount 500 + 150 + 20 + 80 + 250 = 1000

CANDIDATE = """
rules:
  - id: r_big            # rows 0 1 2 5 8; frauds 0 1 8
    when: amount > 100
    outcome: review
  - id: r_fast           # rows 0 3 4 8; frauds 0 4 8 (row 9: null count, no hit)
    when: customer.tx_count_1h >= 5
    outcome: block
  - id: r_watch          # rows 0 1 2 3 5 6 8; frauds 0 1 6 8
    when: amount > 50
    outcome: review
    shadow: true
"""
BASELINE = """
rules:
  - id: r_big            # rows 0 5 8; frauds 0 8
    when: amount > 200
    outcome: block
"""


def test_rule_and_set_figures() -> None:
    report = backtest(parse_ruleset(CANDIDATE, SCHEMA), HISTORY, parse_ruleset(BASELINE, SCHEMA))
    rules = {r.id: r for r in report.rules}
    big, fast, watch = rules["r_big"], rules["r_fast"], rules["r_watch"]
    assert (big.hits, big.fraud_hits, big.fraud_amount_caught) == (5, 3, 900.0)
    assert (big.precision, big.recall, big.baseline_hits) == (0.6, 0.6, 3)
    assert (fast.hits, fast.fraud_hits, fast.fraud_amount_caught) == (4, 3, 770.0)
    assert (fast.precision, fast.recall, fast.baseline_hits) == (0.75, 0.6, None)
    assert watch.shadow and (watch.hits, watch.fraud_hits) == (7, 4)
    assert watch.precision == pytest.approx(4 / 7) and watch.recall == 0.8
    assert watch.fraud_amount_caught == 980.0

    s = report.set  # flagged: rows 0 1 2 3 4 5 8 (the shadow rule changes nothing)
    assert (s.n, s.frauds, s.fraud_amount) == (10, 5, 1000.0)
    assert (s.flagged, s.blocked, s.reviewed, s.fraud_flagged) == (7, 4, 3, 4)
    assert s.precision == pytest.approx(4 / 7) and s.recall == 0.8
    assert (s.review_rate, s.block_rate) == (0.3, 0.4)
    assert s.fraud_amount_caught == 920.0  # 500 + 150 + 20 + 250

    b = report.baseline
    assert b is not None
    assert (b.flagged, b.blocked, b.fraud_flagged, b.fraud_amount_caught) == (3, 3, 2, 750.0)
    assert b.precision == pytest.approx(2 / 3) and b.recall == 0.4
    d = report.delta
    assert d is not None
    assert (d["flagged"], d["newly_flagged"], d["no_longer_flagged"]) == (4, 4, 0)
    assert (d["outcome_changed"], d["frauds_newly_caught"]) == (5, 2)
    assert d["recall"] == pytest.approx(0.4)
    assert d["fraud_amount_caught"] == 170.0
    assert report.notes == []


def test_report_renders_and_serialises() -> None:
    report = backtest(parse_ruleset(CANDIDATE, SCHEMA), HISTORY, parse_ruleset(BASELINE, SCHEMA))
    data = report.to_dict()
    assert data["set"]["flagged"] == 7 and data["rules"][0]["id"] == "r_big"
    console = Console(record=True, width=140)
    for table in report.tables():
        console.print(table)
    text = console.export_text()
    assert "r_watch (shadow)" in text and "60.0%" in text and "new" in text


def test_lists_come_from_memberships_or_are_noted() -> None:
    rules = parse_ruleset(
        'rules:\n  - id: bad_ip\n    when: ip in list("ip_blocklist")\n    outcome: block\n',
        SCHEMA,
    )
    report = backtest(rules, HISTORY)
    assert report.set.flagged == 0
    assert report.notes == ["list 'ip_blocklist' not resolved: counted as not listed"]
    member = np.zeros(10, dtype=bool)
    member[[0, 7]] = True
    report = backtest(rules, HISTORY, memberships={"ip_blocklist|ip": member})
    assert (report.set.flagged, report.set.fraud_flagged) == (2, 1)
    assert report.baseline is None and report.delta is None


def test_missing_columns_are_named() -> None:
    rules = parse_ruleset(CANDIDATE, SCHEMA)
    with pytest.raises(RuleEvaluationError, match="customer_tx_count_1h"):
        backtest(rules, HISTORY.drop("customer_tx_count_1h"))
    with pytest.raises(RuleEvaluationError, match="is_fraud"):
        backtest(rules, HISTORY.drop("is_fraud"))


MODEL_RULES = """
rules:
  - id: hot_and_big      # model_score >= 350: rows 0 3 4 6 9; amount > 100: rows 0 1 2 5 8
    when: model.score >= 350 and amount > 100
    outcome: review
  - id: large            # rows 0 5; row 5: 20 + 500 = 520, a review, not a step-up
    when: amount >= 300
    outcome: step_up
    score: 500
"""
SCORES = np.array([900, 100, 50, 400, 850, 20, 600, 10, 300, 700], dtype=np.float64)


def test_rules_see_the_model_score_and_the_set_decides_as_production() -> None:
    """With a model's scores, a rule reads ``model.score`` and the set's outcome is the
    decision production would make: the rules' points added to the model score, compared
    with the model's thresholds, and the rules' outcomes on top."""
    rules = parse_ruleset(MODEL_RULES, SCHEMA)
    scored = ModelScores("m-1", SCORES, Thresholds(review=500, block=800))
    report = backtest(rules, HISTORY, model=scored)
    hot = {r.id: r for r in report.rules}["hot_and_big"]
    assert (hot.hits, hot.fraud_hits) == (1, 1)
    # blocks: rows 0 (900) and 4 (850); reviews: 6 (600), 9 (700) and 5 (20 + 500)
    s = report.set
    assert (s.flagged, s.blocked, s.reviewed, s.fraud_flagged) == (5, 2, 3, 3)
    assert s.precision == pytest.approx(3 / 5) and s.recall == pytest.approx(3 / 5)
    assert s.fraud_amount_caught == 600.0  # rows 0, 4, 6: 500 + 20 + 80
    assert report.model_version == "m-1" and report.notes == []
    assert report.to_dict()["model_version"] == "m-1"


def test_rules_reading_the_model_score_without_a_model_are_refused() -> None:
    rules = parse_ruleset(MODEL_RULES, SCHEMA)
    with pytest.raises(RuleEvaluationError, match="model.score.*--model"):
        backtest(rules, HISTORY)
    plain = backtest(parse_ruleset(CANDIDATE, SCHEMA), HISTORY)
    assert plain.model_version is None
