"""The Scorer: the one code path from transactions to decisions (API and workers alike).

Today it has one stage, an amount policy: the score rises piecewise-linearly with the amount so
that the review limit maps to the review score and the block limit to the block score. Later
stages (features, rules, models) plug in behind the same `score_batch` call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from fraudstream.config import Settings
from fraudstream.schema import Decision, Outcome, Transaction


@dataclass(frozen=True)
class AmountPolicy:
    """Amount limits and the score thresholds they map onto.

    >>> p = AmountPolicy(review_amount=200, block_amount=1000, review_score=500, block_score=800)
    >>> p.score(100), p.score(200), p.score(1000), p.score(5000)
    (250, 500, 800, 1000)
    """

    review_amount: float
    block_amount: float
    review_score: int
    block_score: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AmountPolicy:
        return cls(
            settings.review_amount,
            settings.block_amount,
            settings.review_score,
            settings.block_score,
        )

    @property
    def version(self) -> str:
        return f"amount-limits:{self.review_amount:g}/{self.block_amount:g}"

    def score(self, amount: float) -> int:
        r, b = self.review_amount, self.block_amount
        if amount < r:
            value = self.review_score * amount / r
        elif amount < b:
            value = self.review_score + (self.block_score - self.review_score) * (amount - r) / (
                b - r
            )
        else:
            value = self.block_score + (1000 - self.block_score) * min(1.0, (amount - b) / b)
        return max(0, min(1000, round(value)))

    def outcome(self, score: int) -> Outcome:
        if score >= self.block_score:
            return "block"
        if score >= self.review_score:
            return "review"
        return "approve"

    def reasons(self, amount: float) -> list[str]:
        if amount >= self.block_amount:
            return [f"amount_over_block_limit: {amount:.2f} >= {self.block_amount:.2f}"]
        if amount >= self.review_amount:
            return [f"amount_over_review_limit: {amount:.2f} >= {self.review_amount:.2f}"]
        return []


class Scorer:
    """Transactions in, decisions out, in batches."""

    model_version = "none"

    def __init__(self, policy: AmountPolicy) -> None:
        self.policy = policy

    def score_batch(
        self, transactions: Sequence[Transaction], arrived_at: Sequence[float] | None = None
    ) -> list[Decision]:
        """Score a batch.

        Args:
            transactions: validated transactions, in the order they were received.
            arrived_at: per transaction, the epoch seconds at which it entered fraudstream
                (stream enqueue time or HTTP arrival); defaults to now. Sets ``latency_ms``.
        """
        now = time.time()
        decided_at = datetime.fromtimestamp(now, UTC)
        arrivals = arrived_at if arrived_at is not None else [now] * len(transactions)
        policy = self.policy
        decisions = []
        for tx, arrived in zip(transactions, arrivals, strict=True):
            score = policy.score(tx.amount)
            decisions.append(
                Decision(
                    transaction_id=tx.transaction_id,
                    score=score,
                    outcome=policy.outcome(score),
                    reasons=policy.reasons(tx.amount),
                    model_version=self.model_version,
                    rules_version=policy.version,
                    latency_ms=max(0.0, (now - arrived) * 1000),
                    decided_at=decided_at,
                )
            )
        return decisions
