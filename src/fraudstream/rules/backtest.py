"""Backtest a rule set on a labelled history: per-rule and whole-set figures, vs a baseline.

The history is a polars DataFrame holding every column the rules read (features under their
flat names, e.g. ``customer_tx_count_1h``), the label (``is_fraud``) and ``amount``. Rules
are evaluated exactly as in production (`evaluate_columns`, same null semantics); list
lookups come from ``memberships`` (e.g. `Lists.memberships` on the history) or count as "not
listed", which the report notes.

Definitions (n = transactions, F = frauds):

- rule *hits*: rows where the rule is true (shadow rules included: they are reported, and
  never change the set's outcome); *precision* = fraud hits / hits; *recall* = fraud hits / F;
  *fraud amount caught* = sum of ``amount`` over fraud hits;
- the set *flags* a row when its outcome is ``step_up``, ``review`` or ``block``; *review
  rate* = (step_up + review) / n; *block rate* = block / n; precision, recall and the fraud
  amount caught are over flagged rows.

With a model's scores (`ModelScores`: ``fraudstream rules backtest --model active|VERSION``)
the rules read ``model.score`` as they do in production, and the set's outcome is the
decision production would make (`decide_batch`): the model score plus the rules' points (or
their floor) against the model's thresholds, the rules' outcomes on top. Without one, the set's
outcome is the rules' alone, and a rule reading ``model.score`` is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from rich.table import Table

from fraudstream.rules.context import BoolArray, RuleContext
from fraudstream.rules.errors import RuleEvaluationError
from fraudstream.rules.evaluate import BatchResult, evaluate_columns
from fraudstream.rules.policy import Thresholds, decide_batch
from fraudstream.rules.ruleset import OUTCOME_RANK, RuleSet

_FLAG = OUTCOME_RANK["step_up"]
_BLOCK = OUTCOME_RANK["block"]
_REVIEW = (OUTCOME_RANK["step_up"], OUTCOME_RANK["review"])
MODEL_SCORE = "model_score"


@dataclass(frozen=True)
class ModelScores:
    """A model's scores of the history's rows (0-1000, in row order) and its thresholds."""

    version: str
    scores: npt.NDArray[np.float64]
    thresholds: Thresholds


@dataclass(frozen=True)
class RuleStats:
    id: str
    outcome: str
    shadow: bool
    hits: int
    fraud_hits: int
    precision: float | None
    recall: float | None
    fraud_amount_caught: float
    baseline_hits: int | None = None
    """Hits of the rule with the same id in the baseline set (``None``: not there)."""


@dataclass(frozen=True)
class SetStats:
    n: int
    frauds: int
    fraud_amount: float
    flagged: int
    reviewed: int
    blocked: int
    approved_by_rule: int
    fraud_flagged: int
    precision: float | None
    recall: float | None
    review_rate: float
    block_rate: float
    fraud_amount_caught: float


@dataclass(frozen=True)
class BacktestReport:
    version: str
    rules: list[RuleStats]
    set: SetStats
    baseline_version: str | None = None
    baseline: SetStats | None = None
    delta: dict[str, float] | None = None
    """``set - baseline`` for each numeric figure, plus ``newly_flagged``,
    ``no_longer_flagged``, ``outcome_changed`` and ``frauds_newly_caught``."""
    notes: list[str] = field(default_factory=list)
    model_version: str | None = None
    """The model whose scores the rules saw and the set decided with (``None``: rules
    alone)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)

    def tables(self) -> list[Table]:
        """Rich tables for people: the rules, then the set (with the baseline if any)."""
        model = f" with model {self.model_version}" if self.model_version else ""
        rules = Table(title=f"rules @ {self.version}{model}")
        for col in ("rule", "outcome", "hits", "fraud hits", "precision", "recall", "fraud amt"):
            rules.add_column(col, justify="left" if col in ("rule", "outcome") else "right")
        if self.baseline is not None:
            rules.add_column("Δ hits", justify="right")
        for r in self.rules:
            row = [
                r.id + (" (shadow)" if r.shadow else ""),
                r.outcome,
                str(r.hits),
                str(r.fraud_hits),
                _pct(r.precision),
                _pct(r.recall),
                f"{r.fraud_amount_caught:,.2f}",
            ]
            if self.baseline is not None:
                row.append("new" if r.baseline_hits is None else f"{r.hits - r.baseline_hits:+d}")
            rules.add_row(*row)
        summary = Table(title="rule set")
        summary.add_column("figure")
        summary.add_column(self.version, justify="right")
        if self.baseline is not None and self.delta is not None:
            summary.add_column(f"baseline {self.baseline_version}", justify="right")
            summary.add_column("Δ", justify="right")
        for key, value in asdict(self.set).items():
            cells = [key, _fmt(key, value)]
            if self.baseline is not None and self.delta is not None:
                cells += [_fmt(key, getattr(self.baseline, key)), _fmt(key, self.delta.get(key))]
            summary.add_row(*cells)
        return [rules, summary]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key in ("precision", "recall", "review_rate", "block_rate"):
        return f"{100 * value:+.2f}%" if isinstance(value, float) and value < 0 else _pct(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def history_columns(history: pl.DataFrame, names: set[str] | frozenset[str]) -> dict[str, Any]:
    """The columns the rules read, as rule-engine arrays (NaN / None for nulls)."""
    missing = sorted(set(names) - set(history.columns))
    if missing:
        raise RuleEvaluationError(f"the history lacks columns the rules read: {missing}")
    out: dict[str, Any] = {}
    for name in names:
        series = history.get_column(name)
        if series.dtype == pl.Utf8 or series.dtype == pl.Categorical:
            out[name] = np.array(series.cast(pl.Utf8).to_list(), dtype=object)
        else:
            out[name] = series.cast(pl.Float64).fill_null(np.nan).to_numpy()
    return out


def backtest(
    ruleset: RuleSet,
    history: pl.DataFrame,
    baseline: RuleSet | None = None,
    *,
    memberships: Mapping[str, BoolArray] | None = None,
    label: str = "is_fraud",
    amount: str = "amount",
    model: ModelScores | None = None,
) -> BacktestReport:
    """Evaluate ``ruleset`` (and ``baseline``) on ``history`` and compute the figures."""
    for col in (label, amount):
        if col not in history.columns:
            raise RuleEvaluationError(f"the history has no '{col}' column")
    for checked in (ruleset, baseline):
        if model is None and checked is not None and MODEL_SCORE in checked.columns:
            raise RuleEvaluationError(
                f"rule set {checked.version} reads model.score: backtest it with a model "
                "(--model active or --model VERSION)"
            )
    if model is not None and model.scores.shape != (history.height,):
        raise ValueError(f"{model.scores.shape[0]} model scores for {history.height} rows")
    fraud = history.get_column(label).cast(pl.Boolean).fill_null(False).to_numpy()
    amounts = history.get_column(amount).cast(pl.Float64).fill_null(0.0).to_numpy()
    notes: list[str] = []
    result = _run(ruleset, history, memberships, notes, model)
    set_stats = _set_stats(result, fraud, amounts)
    base_result = (
        _run(baseline, history, memberships, notes, model) if baseline is not None else None
    )
    base_stats = _set_stats(base_result, fraud, amounts) if base_result is not None else None
    base_hits = _hit_counts(base_result[0]) if base_result is not None else {}
    rules = _rule_stats(ruleset, result[0], fraud, amounts, base_hits, baseline is not None)
    delta = None
    if base_result is not None and base_stats is not None:
        delta = _delta(set_stats, base_stats, result[1], base_result[1], fraud)
    return BacktestReport(
        ruleset.version,
        rules,
        set_stats,
        baseline.version if baseline is not None else None,
        base_stats,
        delta,
        sorted(set(notes)),
        model.version if model is not None else None,
    )


def _run(
    ruleset: RuleSet,
    history: pl.DataFrame,
    memberships: Mapping[str, BoolArray] | None,
    notes: list[str],
    model: ModelScores | None = None,
) -> tuple[BatchResult, npt.NDArray[np.int64]]:
    """The rules' hits, and the set's outcome per row (`OUTCOME_RANK`; -1: no live rule
    hit): the rules' own, or with ``model`` production's decision (`decide_batch`)."""
    read = set(ruleset.columns) - ({MODEL_SCORE} if model is not None else set())
    columns = history_columns(history, read)
    if model is not None:
        columns[MODEL_SCORE] = model.scores
    resolved = dict(memberships or {})
    for ref in ruleset.lists:
        if ref.key not in resolved:
            notes.append(f"list '{ref.list_name}' not resolved: counted as not listed")
            resolved[ref.key] = np.zeros(history.height, dtype=bool)
    result = evaluate_columns(ruleset, RuleContext(columns, resolved, n=history.height))
    if model is None:
        return result, result.outcome
    _, outcomes = decide_batch(result, model.scores, model.thresholds)
    return result, np.array([OUTCOME_RANK[o] for o in outcomes], dtype=np.int64)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _rule_stats(
    ruleset: RuleSet,
    result: BatchResult,
    fraud: npt.NDArray[np.bool_],
    amounts: npt.NDArray[np.float64],
    base_hits: dict[str, int],
    has_baseline: bool,
) -> list[RuleStats]:
    frauds = int(fraud.sum())
    rows = {rid: result.hits[i] for i, rid in enumerate(result.live_ids)}
    rows.update({rid: result.shadow_hits[i] for i, rid in enumerate(result.shadow_ids)})
    out = []
    for rule in ruleset.rules:
        if rule.id not in rows:
            continue  # disabled
        hit = rows[rule.id]
        hits, tp = int(hit.sum()), int((hit & fraud).sum())
        out.append(
            RuleStats(
                rule.id,
                rule.outcome,
                rule.shadow,
                hits,
                tp,
                _ratio(tp, hits),
                _ratio(tp, frauds),
                float(amounts[hit & fraud].sum()),
                base_hits.get(rule.id) if has_baseline else None,
            )
        )
    return out


def _hit_counts(result: BatchResult) -> dict[str, int]:
    out = {rid: int(result.hits[i].sum()) for i, rid in enumerate(result.live_ids)}
    out.update({rid: int(result.shadow_hits[i].sum()) for i, rid in enumerate(result.shadow_ids)})
    return out


def _set_stats(
    run: tuple[BatchResult, npt.NDArray[np.int64]],
    fraud: npt.NDArray[np.bool_],
    amounts: npt.NDArray[np.float64],
) -> SetStats:
    result, outcome = run
    n = result.n
    flagged = outcome >= _FLAG
    reviewed = np.isin(outcome, _REVIEW)
    caught = flagged & fraud
    frauds = int(fraud.sum())
    return SetStats(
        n=n,
        frauds=frauds,
        fraud_amount=float(amounts[fraud].sum()),
        flagged=int(flagged.sum()),
        reviewed=int(reviewed.sum()),
        blocked=int((outcome == _BLOCK).sum()),
        approved_by_rule=int((result.outcome == OUTCOME_RANK["approve"]).sum()),
        fraud_flagged=int(caught.sum()),
        precision=_ratio(int(caught.sum()), int(flagged.sum())),
        recall=_ratio(int(caught.sum()), frauds),
        review_rate=float(reviewed.sum() / n) if n else 0.0,
        block_rate=float((outcome == _BLOCK).sum() / n) if n else 0.0,
        fraud_amount_caught=float(amounts[caught].sum()),
    )


def _delta(
    new: SetStats,
    old: SetStats,
    outcome: npt.NDArray[np.int64],
    base: npt.NDArray[np.int64],
    fraud: npt.NDArray[np.bool_],
) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in asdict(new).items():
        before = getattr(old, key)
        if value is not None and before is not None:
            out[key] = value - before
    flagged, was = outcome >= _FLAG, base >= _FLAG
    out["newly_flagged"] = int((flagged & ~was).sum())
    out["no_longer_flagged"] = int((was & ~flagged).sum())
    out["outcome_changed"] = int((outcome != base).sum())
    out["frauds_newly_caught"] = int((flagged & ~was & fraud).sum())
    return out
