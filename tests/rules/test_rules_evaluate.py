"""Evaluating rule sets over batches: all/first matched, shadow rules, scores; and the policy."""

from __future__ import annotations

import textwrap

import numpy as np

from fraudstream.rules import (
    RuleResult,
    RuleSchema,
    Thresholds,
    decide,
    decide_batch,
    evaluate_batch,
    evaluate_columns,
    explain,
    parse_ruleset,
)
from fraudstream.rules.evaluate import BatchResult
from rulekit import batch


def ruleset_text(mode: str) -> str:
    return textwrap.dedent(
        f"""
        mode: {mode}
        rules:
          - id: allow_small
            when: amount < 5
            outcome: approve
            score: -100
            priority: 100
          - id: big
            when: amount > 1000
            outcome: block
            score: {{floor: 900}}
            priority: 10
          - id: busy
            when: customer.tx_count_1h >= 5
            outcome: review
            score: 150
          - id: new_category
            when: is_first_seen.product_category
            outcome: step_up
            score: {{add: 50, floor: 300}}
          - id: watch
            when: amount > 100
            outcome: block
            shadow: true
          - id: off
            when: true
            outcome: block
            enabled: false
        """
    )


COLUMNS = batch(
    amount=[2000, 2, 200, 50, 3, 2000],
    customer_tx_count_1h=[9, 9, 9, 0, None, 0],
    is_first_seen_product_category=[1, 0, 1, 0, 1, None],
)


def test_all_matched(schema: RuleSchema) -> None:
    rs = parse_ruleset(ruleset_text("all_matched"), schema)
    results = evaluate_batch(rs, COLUMNS)
    assert results[0] == RuleResult(
        hits=("big", "busy", "new_category"),
        shadow_hits=("watch",),
        outcome="block",
        score_add=200,
        score_floor=900,
    )
    assert results[1] == RuleResult(
        hits=("allow_small", "busy"), outcome="review", score_add=50, score_floor=None
    )
    assert results[2] == RuleResult(
        hits=("busy", "new_category"),
        shadow_hits=("watch",),
        outcome="review",
        score_add=200,
        score_floor=300,
    )
    assert results[3] == RuleResult()
    assert results[4].outcome == "step_up" and results[4].hits == ("allow_small", "new_category")
    assert results[5].hits == ("big",)


def test_first_matched(schema: RuleSchema) -> None:
    rs = parse_ruleset(ruleset_text("first_matched"), schema)
    results = evaluate_batch(rs, COLUMNS)
    assert results[0].decisive == "big" and results[0].outcome == "block"
    assert (results[0].score_add, results[0].score_floor) == (0, 900)
    assert results[0].hits == ("big", "busy", "new_category")  # all hits stay visible
    assert results[1].decisive == "allow_small" and results[1].outcome == "approve"
    assert results[1].score_add == -100
    assert results[2].decisive == "busy" and results[2].score_add == 150
    assert results[3] == RuleResult()
    assert results[4].decisive == "allow_small"


def test_shadow_rules_never_change_the_outcome(schema: RuleSchema) -> None:
    text = ruleset_text("all_matched")
    with_shadow = evaluate_columns(parse_ruleset(text, schema), COLUMNS)
    unshadowed = text.replace("shadow: true", "shadow: false")
    live = evaluate_columns(parse_ruleset(unshadowed, schema), COLUMNS)
    assert with_shadow.shadow_hits.sum() == 3
    assert with_shadow.outcome.tolist() != live.outcome.tolist()
    assert with_shadow.outcome.tolist() == [3, 2, 2, -1, 1, 3]


def test_policy_combines_rules_and_model(schema: RuleSchema) -> None:
    t = Thresholds(review=500, block=800)
    rs = parse_ruleset(ruleset_text("all_matched"), schema)
    results = evaluate_batch(rs, COLUMNS)
    model = [100, 950, 100, 600, 900, 0]
    verdicts = [decide(r, m, t) for r, m in zip(results, model, strict=True)]
    assert [(v.score, v.outcome) for v in verdicts] == [
        (900, "block"),  # floor 900
        (1000, "block"),  # 950 + 150 - 100, clamped: the approve rule did not decide
        (300, "review"),  # 100 + 200 -> 300 (= the floor); busy says review
        (600, "review"),  # the model alone
        (850, "block"),  # 900 - 100 + 50: the score blocks, step_up does not lower it
        (900, "block"),
    ]
    assert verdicts[0].reasons == ["rule:big", "rule:busy", "rule:new_category"]
    step = decide(RuleResult(hits=("new_category",), outcome="step_up"), 100, t)
    assert (step.outcome, step.reasons) == ("step_up", ["rule:new_category"])
    allow = decide(RuleResult(hits=("vip",), outcome="approve", score_add=-100), 950, t)
    assert (allow.score, allow.outcome) == (850, "approve")
    # vectorised policy agrees with the per-transaction one
    scores, outcomes = decide_batch(evaluate_columns(rs, COLUMNS), model, t)
    assert scores.tolist() == [v.score for v in verdicts]
    assert outcomes == [v.outcome for v in verdicts]


def test_step_up_band_lies_below_review_and_both_policies_agree() -> None:
    banded = Thresholds(review=500, block=800, step_up=400)
    scores = list(range(0, 1001, 25))
    want = [
        "block" if s >= 800 else "review" if s >= 500 else "step_up" if s >= 400 else "approve"
        for s in scores
    ]
    none = RuleResult()
    assert [decide(none, s, banded).outcome for s in scores] == want
    n = len(scores)
    no_hits = np.zeros((0, n), dtype=bool)
    empty = BatchResult(
        (), no_hits, (), no_hits, np.full(n, -1), np.zeros(n), np.full(n, np.nan), np.full(n, -1)
    )
    assert decide_batch(empty, scores, banded)[1] == want
    # without a band, the scores that would step up approve; a step_up rule still steps up
    assert decide(none, 450, Thresholds()).outcome == "approve"
    assert decide_batch(empty, scores, Thresholds())[1].count("step_up") == 0
    rule = RuleResult(hits=("new_device",), outcome="step_up")
    assert decide(rule, 450, Thresholds()).outcome == "step_up"
    assert decide(rule, 600, banded).outcome == "review"  # review outranks a step-up


def test_first_matched_allowlist_overrides_the_model(schema: RuleSchema) -> None:
    rs = parse_ruleset(ruleset_text("first_matched"), schema)
    batch_result = evaluate_columns(rs, COLUMNS)
    scores, outcomes = decide_batch(batch_result, [900] * 6, Thresholds())
    assert outcomes[1] == "approve" and scores[1] == 800
    results = batch_result.results()
    assert decide(results[1], 900, Thresholds()).outcome == "approve"


def test_empty_batch_and_empty_set(schema: RuleSchema) -> None:
    rs = parse_ruleset(ruleset_text("all_matched"), schema)
    empty = {k: v[:0] for k, v in COLUMNS.items()}
    assert evaluate_batch(rs, empty) == []
    none = parse_ruleset("rules: []\n", schema)
    assert evaluate_batch(none, COLUMNS) == [RuleResult()] * 6
    first = parse_ruleset("mode: first_matched\nrules: []\n", schema)
    assert evaluate_batch(first, COLUMNS) == [RuleResult()] * 6


def test_explain_reports_each_rule(schema: RuleSchema) -> None:
    rs = parse_ruleset(ruleset_text("all_matched"), schema)
    report = {e.rule_id: e for e in explain(rs, COLUMNS, row=2)}
    assert report["busy"].hit and dict(report["busy"].values)["customer.tx_count_1h"] == 9.0
    assert not report["big"].hit
    assert report["watch"].shadow and report["watch"].hit
    assert not report["off"].enabled


def test_no_numpy_warnings_escape(schema: RuleSchema) -> None:
    rs = parse_ruleset(
        "rules:\n  - id: r\n    when: amount / customer.tx_count_1h > 1 or amount % 0 > 1\n"
        "    outcome: review\n",
        schema,
    )
    cols = batch(amount=[1, 0, None], customer_tx_count_1h=[0, 0, 1])
    assert [r.hits for r in evaluate_batch(rs, cols)] == [(), (), ()]
    assert np.geterr()["divide"] == "warn"


def test_shared_string_work_is_computed_once_per_batch(schema: RuleSchema) -> None:
    text = (
        "rules:\n"
        "  - {id: a, when: 'startswith(lower(email), \"ab\")', outcome: review}\n"
        "  - {id: b, when: 'startswith(lower(email),  \"ab\") and amount > 1', outcome: block}\n"
        "  - {id: c, when: 'lower(email) == \"xy\"', outcome: review}\n"
    )
    rs = parse_ruleset(text, schema)
    first = batch(email=["ABc", "xy", "zz"], amount=[5, 5, 5])
    second = batch(email=["zz", "AB", None], amount=[0, 0, 0])
    assert [r.hits for r in evaluate_batch(rs, first)] == [("a", "b"), ("c",), ()]
    assert [r.hits for r in evaluate_batch(rs, second)] == [(), ("a",), ()]
