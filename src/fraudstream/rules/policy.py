"""Policy: combine the rule set's verdict with the model score into the final outcome.

1. score = model score + the rules' additions, raised to the highest floor, clamped to 0–1000;
2. the score maps to approve / step_up / review / block through the thresholds (the step-up
   band, ``[step_up, review)``, is empty unless a step-up score is set);
3. the rules' outcome raises that (``approve < step_up < review < block``: a step-up
   challenges the buyer, which is milder than holding the payment for an analyst);
4. an ``approve`` outcome (an allowlist rule that decided) approves whatever the score says;
   the score is still reported. Only in ``all_matched`` mode can a stronger hit override it.

Reasons list every live rule that hit (``rule:ip_blocklist``), in evaluation order.

>>> from fraudstream.rules.evaluate import RuleResult
>>> t = Thresholds(review=500, block=800)
>>> decide(RuleResult(hits=("ip_blocklist",), outcome="block", score_floor=900), 120, t)
Verdict(score=900, outcome='block', reasons=['rule:ip_blocklist'])
>>> decide(RuleResult(hits=("new_device",), outcome="step_up", score_add=50), 300, t)
Verdict(score=350, outcome='step_up', reasons=['rule:new_device'])
>>> decide(RuleResult(), 420, Thresholds(review=500, block=800, step_up=400)).outcome
'step_up'
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fraudstream.rules.evaluate import BatchResult, RuleResult
from fraudstream.rules.ruleset import OUTCOME_RANK
from fraudstream.schema import OUTCOMES, Outcome

_LEVEL: dict[str, int] = {outcome: level for level, outcome in enumerate(OUTCOMES)}
"""Rule outcome -> Decision level (0 approve, 1 step_up, 2 review, 3 block)."""
_LEVEL_BY_RANK = np.array([_LEVEL[o] for o in sorted(OUTCOME_RANK, key=OUTCOME_RANK.__getitem__)])


@dataclass(frozen=True)
class Thresholds:
    """Score thresholds: ``>= step_up`` (when above 0) challenges, ``>= review`` reviews,
    ``>= block`` blocks (``Settings.step_up_score``, ``review_score`` and ``block_score``)."""

    review: int = 500
    block: int = 800
    step_up: int = 0
    """0: no step-up band (a rule may still ask for one)."""

    def level(self, score: int) -> int:
        step = 0 < self.step_up <= score
        return int(step or score >= self.review) + (score >= self.review) + (score >= self.block)


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
    level = thresholds.level(score)
    reasons = [f"rule:{rule_id}" for rule_id in result.hits]
    if result.outcome == "approve":
        level = 0
    elif result.outcome is not None:
        level = max(level, _LEVEL[result.outcome])
    return Verdict(score, OUTCOMES[level], reasons)


def decide_batch(
    batch: BatchResult, model_scores: npt.ArrayLike, thresholds: Thresholds
) -> tuple[npt.NDArray[np.int64], list[Outcome]]:
    """Vectorised `decide` without the reasons: final scores and outcomes of a batch."""
    raw = np.asarray(model_scores, dtype=np.float64) + batch.score_add
    raw = np.fmax(raw, batch.score_floor)  # fmax ignores the NaN of "no floor"
    scores = np.clip(np.rint(raw), 0, 1000).astype(np.int64)
    review = scores >= thresholds.review
    step = (scores >= thresholds.step_up) if thresholds.step_up > 0 else review
    level = step.astype(np.int64) + review + (scores >= thresholds.block)
    has = batch.outcome >= 0
    rule_level = np.where(has, _LEVEL_BY_RANK[np.maximum(batch.outcome, 0)], 0)
    level = np.maximum(level, rule_level)
    level[batch.outcome == OUTCOME_RANK["approve"]] = 0
    return scores, [OUTCOMES[i] for i in level.tolist()]
