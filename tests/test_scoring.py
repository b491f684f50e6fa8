from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.errors import SchemaError
from fraudstream.rules import RuleSchema
from fraudstream.rules.lists import Lists
from fraudstream.rules.registry import RuleRegistry, RuleWatcher
from fraudstream.schema import Transaction
from fraudstream.scoring import AmountPolicy, Scorer

POLICY = AmountPolicy(review_amount=220, block_amount=5000, review_score=500, block_score=800)


def _tx(i: int, amount: float) -> Transaction:
    return Transaction(
        transaction_id=f"t{i}",
        timestamp=datetime(2020, 1, 1, tzinfo=UTC),
        customer_id="c",
        terminal_id="t",
        merchant_id="m",
        amount=amount,
        currency="EUR",
        channel="card_present",
    )


amounts = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)


@given(amounts, amounts)
def test_score_is_monotone_in_amount(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    assert 0 <= POLICY.score(lo) <= POLICY.score(hi) <= 1000


@given(amounts)
def test_outcome_follows_the_limits(amount: float) -> None:
    outcome = POLICY.outcome(POLICY.score(amount))
    if amount >= 5000:
        assert outcome == "block"
    elif amount >= 220:
        assert outcome == "review"
    elif POLICY.score(amount) < 500:
        assert outcome == "approve"


def test_batch_keeps_order_ids_and_reasons() -> None:
    txs = [_tx(0, 10.0), _tx(1, 300.0), _tx(2, 9000.0)]
    decisions = Scorer(POLICY).score_batch(txs, arrived_at=[0.0, 0.0, 0.0])
    assert [d.transaction_id for d in decisions] == ["t0", "t1", "t2"]
    assert [d.outcome for d in decisions] == ["approve", "review", "block"]
    assert decisions[0].reasons == []
    assert decisions[1].reasons == ["amount_over_review_limit: 300.00 >= 220.00"]
    assert decisions[2].reasons[0].startswith("amount_over_block_limit")
    assert all(d.latency_ms > 0 for d in decisions)  # arrived at the epoch: a long time ago
    assert decisions[0].rules_version == "amount-limits:220/5000"
    for d in decisions:  # where the latency went: the queue dominates (arrived at the epoch)
        assert set(d.stages) == {"queue", "features", "model", "rules"}
        assert all(v >= 0 for v in d.stages.values())
        assert sum(d.stages.values()) <= d.latency_ms + 0.01  # each stage rounded to 1 µs
        assert d.stages["queue"] > 0.99 * d.latency_ms


def test_amounts_above_the_configured_bound_are_refused_naming_the_field() -> None:
    scorer = Scorer(POLICY, max_amount=1e6)
    scorer.validate(_tx(0, 1e6))
    scorer.validate(_tx(1, 0.0))
    with pytest.raises(SchemaError, match=r"^amount: must be at most 1e\+06 \(max_amount\)") as e:
        scorer.validate(_tx(2, 1e6 + 0.01))
    assert e.value.field == "amount"


def _rules_on(list_name: str) -> str:
    return f"""rules:
  - id: listed
    when: customer_id in list("{list_name}")
    outcome: block
"""


def test_list_lookups_follow_the_rule_set_in_force(client: redis.Redis) -> None:
    """The lists are looked up with the registries' pointers, before the features: for the
    rule set in force, or, when that read moves it, for the new one."""
    registry = RuleRegistry(client, RuleSchema.build([]))
    Lists(client).create("blocked")
    Lists(client).add("blocked", ["c"])
    scorer = Scorer(POLICY, rules=RuleWatcher(registry), lists=Lists(client))
    assert scorer.score_batch([_tx(0, 10.0)])[0].outcome == "approve"  # no rule set yet
    registry.publish(_rules_on("blocked"))  # moves in the look-up: looked up again after it
    first = scorer.score_batch([_tx(1, 10.0)])[0]
    assert first.outcome == "block" and "rule:listed" in first.reasons
    again = scorer.score_batch([_tx(2, 10.0)])[0]  # unchanged: in the pointers' round trip
    assert again.outcome == "block" and again.rules_version == first.rules_version
    registry.publish(_rules_on("elsewhere"))
    assert scorer.score_batch([_tx(3, 10.0)])[0].outcome == "approve"
