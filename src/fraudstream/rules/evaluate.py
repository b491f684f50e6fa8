"""Evaluate a rule set over a batch: hit matrices first, per-transaction results last.

`evaluate_columns` does the work with numpy, one array per rule and a handful of reductions
for the whole set; `evaluate_batch` turns that into one `RuleResult` per transaction (the
shared empty result for the many that hit nothing). `explain` evaluates every rule on one
transaction and shows the value of each sub-expression (``rules test``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudstream.rules.context import BoolArray, RuleContext
from fraudstream.rules.errors import RuleError
from fraudstream.rules.ruleset import OUTCOME_RANK, RULE_OUTCOMES, RuleOutcome, RuleSet

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What the rules said about one transaction.

    Attributes:
        hits: ids of the live rules that hit, in evaluation order.
        shadow_hits: ids of the shadow rules that hit (reported, never deciding).
        outcome: the rule set's outcome (``None`` when no live rule hit).
        score_add: points to add to the model score.
        score_floor: the score is raised to at least this (``None``: no floor).
        decisive: in ``first_matched`` mode, the rule that decided.
    """

    hits: tuple[str, ...] = ()
    shadow_hits: tuple[str, ...] = ()
    outcome: RuleOutcome | None = None
    score_add: int = 0
    score_floor: int | None = None
    decisive: str | None = None


NO_HITS = RuleResult()


@dataclass(frozen=True)
class BatchResult:
    """Rule hits of a batch, as arrays (rows = rules in evaluation order, columns = tx)."""

    live_ids: tuple[str, ...]
    hits: BoolArray
    shadow_ids: tuple[str, ...]
    shadow_hits: BoolArray
    outcome: IntArray
    """`OUTCOME_RANK` of the set's outcome per transaction, -1 when no live rule hit."""
    score_add: FloatArray
    score_floor: FloatArray
    """NaN where no floor applies."""
    decisive: IntArray
    """Row in `hits` of the deciding rule (first_matched), -1 otherwise."""

    @property
    def n(self) -> int:
        return int(self.outcome.shape[0])

    def results(self) -> list[RuleResult]:
        """One `RuleResult` per transaction (the shared `NO_HITS` where nothing hit)."""
        out = [NO_HITS] * self.n
        live = _grouped(self.hits, self.live_ids)
        shadow = _grouped(self.shadow_hits, self.shadow_ids)
        if not live and not shadow:
            return out
        outcome = self.outcome.tolist()
        add = self.score_add.tolist()
        floor = self.score_floor.tolist()
        decisive = self.decisive.tolist()
        for j in sorted(live.keys() | shadow.keys()):
            code, low, first = outcome[j], floor[j], decisive[j]
            out[j] = RuleResult(
                live.get(j, ()),
                shadow.get(j, ()),
                RULE_OUTCOMES[code] if code >= 0 else None,
                int(add[j]),
                None if low != low else int(low),  # NaN: no floor
                self.live_ids[first] if first >= 0 else None,
            )
        return out


def _grouped(hits: BoolArray, ids: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """Transaction index -> ids of the rules that hit it, in rule order (one nonzero call)."""
    if not ids or not hits.size:
        return {}
    tx, rule = np.nonzero(hits.T)
    tx_list, names = tx.tolist(), [ids[i] for i in rule.tolist()]
    out: dict[int, tuple[str, ...]] = {}
    start = 0
    for end in range(1, len(tx_list) + 1):
        if end == len(tx_list) or tx_list[end] != tx_list[start]:
            out[tx_list[start]] = tuple(names[start:end])
            start = end
    return out


class _Plan:
    """Per rule set constants for the combination step (cached on the rule set object)."""

    def __init__(self, ruleset: RuleSet) -> None:
        live = ruleset.live
        self.live = live
        self.shadow = ruleset.shadow
        self.rank = np.array([OUTCOME_RANK[r.outcome] for r in live], dtype=np.int64)
        self.add = np.array([r.score_add for r in live], dtype=np.float64)
        self.floor = np.array(
            [np.nan if r.score_floor is None else r.score_floor for r in live], dtype=np.float64
        )
        self.first = ruleset.mode == "first_matched"


_PLANS: dict[int, tuple[RuleSet, _Plan]] = {}


def _plan(ruleset: RuleSet) -> _Plan:
    cached = _PLANS.get(id(ruleset))
    if cached is None or cached[0] is not ruleset:
        if len(_PLANS) > 64:
            _PLANS.clear()
        cached = (ruleset, _Plan(ruleset))
        _PLANS[id(ruleset)] = cached
    return cached[1]


def _context(
    columns: RuleContext | Mapping[str, Any], memberships: Mapping[str, BoolArray] | None
) -> RuleContext:
    if isinstance(columns, RuleContext):
        return columns
    return RuleContext(columns, memberships)


def evaluate_columns(
    ruleset: RuleSet,
    columns: RuleContext | Mapping[str, Any],
    memberships: Mapping[str, BoolArray] | None = None,
) -> BatchResult:
    """Evaluate every enabled rule over a batch and combine them per the set's mode.

    Args:
        columns: column name -> array (see `fraudstream.rules.context`), or a `RuleContext`.
        memberships: resolved ``in list(...)`` lookups, keyed by `ListRef.key`.

    Raises:
        RuleEvaluationError: a column or membership the rules need is missing.
    """
    ctx = _context(columns, memberships)
    plan = _plan(ruleset)
    n = ctx.n
    with np.errstate(all="ignore"):
        hits = _matrix([r.expr.evaluate for r in plan.live], ctx, n)
        shadow = _matrix([r.expr.evaluate for r in plan.shadow], ctx, n)
    if plan.first:
        return _first_matched(ruleset, plan, hits, shadow)
    return _all_matched(plan, hits, shadow)


def _matrix(fns: list[Any], ctx: RuleContext, n: int) -> BoolArray:
    out = np.empty((len(fns), n), dtype=bool)
    for i, fn in enumerate(fns):
        out[i] = fn(ctx)
    return out


def _ids(plan: _Plan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(r.id for r in plan.live), tuple(r.id for r in plan.shadow)


def _all_matched(plan: _Plan, hits: BoolArray, shadow: BoolArray) -> BatchResult:
    n = hits.shape[1]
    if len(plan.live):
        outcome = np.where(hits, plan.rank[:, None], -1).max(axis=0)
        add = plan.add @ hits
        floors = np.where(hits, plan.floor[:, None], np.nan)
        any_floor = ~np.isnan(floors).all(axis=0)
        floor = np.full(n, np.nan)
        # each column has a number: the largest, NaNs passed over (``np.nanmax``'s value,
        # without its ~10 µs of checks and warnings handling)
        floor[any_floor] = np.fmax.reduce(floors[:, any_floor], axis=0)
    else:
        outcome, add, floor = np.full(n, -1), np.zeros(n), np.full(n, np.nan)
    live_ids, shadow_ids = _ids(plan)
    return BatchResult(
        live_ids, hits, shadow_ids, shadow, outcome, add, floor, np.full(n, -1, dtype=np.int64)
    )


def _first_matched(
    ruleset: RuleSet, plan: _Plan, hits: BoolArray, shadow: BoolArray
) -> BatchResult:
    n = hits.shape[1]
    if len(plan.live):
        any_hit = hits.any(axis=0)
        first = np.where(any_hit, hits.argmax(axis=0), -1)
        safe = np.maximum(first, 0)
        outcome = np.where(any_hit, plan.rank[safe], -1)
        add = np.where(any_hit, plan.add[safe], 0.0)
        floor = np.where(any_hit, plan.floor[safe], np.nan)
    else:
        first = np.full(n, -1)
        outcome, add, floor = np.full(n, -1), np.zeros(n), np.full(n, np.nan)
    live_ids, shadow_ids = _ids(plan)
    return BatchResult(live_ids, hits, shadow_ids, shadow, outcome, add, floor, first)


def evaluate_batch(
    ruleset: RuleSet,
    columns: RuleContext | Mapping[str, Any],
    memberships: Mapping[str, BoolArray] | None = None,
) -> list[RuleResult]:
    """One `RuleResult` per transaction of the batch (see `evaluate_columns`)."""
    return evaluate_columns(ruleset, columns, memberships).results()


@dataclass(frozen=True)
class RuleExplanation:
    """Why one rule did or did not hit one transaction."""

    rule_id: str
    hit: bool
    outcome: RuleOutcome
    shadow: bool
    enabled: bool
    values: list[tuple[str, Any]]
    """Each sub-expression's text and value (``None`` = null), outermost first."""
    error: str | None = None


def explain(
    ruleset: RuleSet,
    columns: RuleContext | Mapping[str, Any],
    memberships: Mapping[str, BoolArray] | None = None,
    row: int = 0,
) -> list[RuleExplanation]:
    """Evaluate each rule (disabled ones too) on one row and show the sub-expression values."""
    ctx = _context(columns, memberships)
    out = []
    for rule in ruleset.rules:
        try:
            values = rule.expr.explain(ctx, row)
            hit, error = bool(values[0][1]) if values else bool(rule.expr(ctx)[row]), None
        except RuleError as exc:
            values, hit, error = [], False, str(exc)
        out.append(
            RuleExplanation(rule.id, hit, rule.outcome, rule.shadow, rule.enabled, values, error)
        )
    return out
