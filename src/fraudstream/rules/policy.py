"""Policy: combine the rule set's verdict with the model score into the final outcome.

1. score = model score + the rules' additions, raised to the highest floor, clamped to 0–1000;
2. the score maps to approve / review / block through the review and block thresholds;
3. the rules' outcome raises that (``step_up`` counts as ``review``, recorded in the reasons
   as ``outcome:step_up`` so the caller can challenge instead of queueing);
4. an ``approve`` outcome (an allowlist rule that decided) approves whatever the score says;
   the score is still reported. Only in ``all_matched`` mode can a stronger hit override it.

Reasons list every live rule that hit (``rule:ip_blocklist``), in evaluation order.

>>> from fraudstream.rules.evaluate import RuleResult
>>> t = Thresholds(review=500, block=800)
>>> decide(RuleResult(hits=("ip_blocklist",), outcome="block", score_floor=900), 120, t)
Verdict(score=900, outcome='block', reasons=['rule:ip_blocklist'])
>>> decide(RuleResult(hits=("new_device",), outcome="step_up", score_add=50), 300, t)
Verdict(score=350, outcome='review', reasons=['rule:new_device', 'outcome:step_up'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.rules.evaluate import BatchResult, RuleResult
from fraudstream.rules.ruleset import OUTCOME_RANK
from fraudstream.schema import OUTCOMES, Outcome

_LEVEL = {"approve": 0, "step_up": 1, "review": 1, "block": 2}
"""Rule outcome -> Decision level (0 approve, 1 review, 2 block)."""
_LEVEL_BY_RANK = np.array([_LEVEL[o] for o in sorted(OUTCOME_RANK, key=OUTCOME_RANK.__getitem__)])


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds: ``>= review`` reviews, ``>= block`` blocks (``Settings.review_score``
    and ``Settings.block_score``)."""

    review: int = 500
    block: int = 800


@dataclass(frozen=True)
class Verdict:
    score: int
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)


def final_score(model_score: float, result: RuleResult) -> int:
    score = model_score + result.score_add
    if result.score_floor is not None:
        score = max(score, result.score_floor)
    return max(0, min(1000, round(score)))


def decide(result: RuleResult, model_score: float, thresholds: Thresholds) -> Verdict:
    """The final score, outcome and reasons of one transaction."""
    score = final_score(model_score, result)
    level = (score >= thresholds.review) + (score >= thresholds.block)
    reasons = [f"rule:{rule_id}" for rule_id in result.hits]
    if result.outcome == "approve":
        level = 0
    elif result.outcome is not None:
        rule_level = _LEVEL[result.outcome]
        if result.outcome == "step_up" and rule_level >= level:
            reasons.append("outcome:step_up")
        level = max(level, rule_level)
    return Verdict(score, OUTCOMES[level], reasons)


def decide_batch(
    batch: BatchResult, model_scores: npt.ArrayLike, thresholds: Thresholds
) -> tuple[npt.NDArray[np.int64], list[Outcome]]:
    """Vectorised `decide` without the reasons: final scores and outcomes of a batch."""
    raw = np.asarray(model_scores, dtype=np.float64) + batch.score_add
    raw = np.fmax(raw, batch.score_floor)  # fmax ignores the NaN of "no floor"
    scores = np.clip(np.rint(raw), 0, 1000).astype(np.int64)
    level = (scores >= thresholds.review).astype(np.int64) + (scores >= thresholds.block)
    has = batch.outcome >= 0
    rule_level = np.where(has, _LEVEL_BY_RANK[np.maximum(batch.outcome, 0)], 0)
    level = np.maximum(level, rule_level)
    level[batch.outcome == OUTCOME_RANK["approve"]] = 0
    return scores, [OUTCOMES[i] for i in level.tolist()]
