"""The Scorer: the one code path from transactions to decisions (API and workers alike).

Stages: online features, a base score, analyst rules, the policy. Until a model is trained and
activated, the base score is an amount policy: it rises piecewise-linearly with the amount so
that the review limit maps to the review score and the block limit to the block score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.config import Settings
from fraudstream.errors import SchemaError
from fraudstream.features.wire import Command, Together
from fraudstream.lookup import Lookup, LookupQuery
from fraudstream.rules import RuleContext, evaluate_columns
from fraudstream.rules.evaluate import RuleResult
from fraudstream.rules.policy import Thresholds, Verdict, decide
from fraudstream.schema import (
    AMOUNT_CEILING,
    OUTCOMES,
    Decision,
    Explanation,
    Label,
    Outcome,
    Transaction,
)

if TYPE_CHECKING:
    import redis

    from fraudstream.features import FeatureEngine
    from fraudstream.features.wire import Riders
    from fraudstream.models import ModelBundle, ModelWatcher
    from fraudstream.rules.lists import Lists
    from fraudstream.rules.registry import RuleWatcher


OnScored = Callable[[NDArray[np.float64], NDArray[np.float64], "ModelBundle"], None]
"""Told each batch the active model scored, once its feature state is written: the live
feature matrix, the model's 0–1000 scores, the model (`fraudstream.drift.DriftMonitor`)."""


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
    step_up_score: int = 0
    """Scores from here up to the review threshold step up (0: none do); applies to the
    model's thresholds as well as to these."""

    @classmethod
    def from_settings(cls, settings: Settings) -> AmountPolicy:
        return cls(
            settings.review_amount,
            settings.block_amount,
            settings.review_score,
            settings.block_score,
            settings.step_up_score,
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

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.review_score, self.block_score, self.step_up_score)

    def outcome(self, score: int) -> Outcome:
        return OUTCOMES[self.thresholds.level(score)]

    def reasons(self, amount: float) -> list[str]:
        if amount >= self.block_amount:
            return [f"amount_over_block_limit: {amount:.2f} >= {self.block_amount:.2f}"]
        if amount >= self.review_amount:
            return [f"amount_over_review_limit: {amount:.2f} >= {self.review_amount:.2f}"]
        return []


@dataclass(frozen=True)
class BaseScores:
    """The base score stage's output for a batch."""

    scores: NDArray[np.float64]
    reasons: list[list[str]]
    version: str
    thresholds: Thresholds
    shadow: list[list[str]]
    model: ModelBundle | None = None
    explanations: dict[int, Explanation] = field(default_factory=dict)
    """Row -> what the model saw, for the rows it explained (the flagged ones)."""


@dataclass(frozen=True)
class Scored:
    """A batch's decisions, and the `Explanation` of each flagged one the model scored (by
    transaction id): what the workers and the API stream beside the decisions."""

    decisions: list[Decision]
    explanations: dict[str, Explanation]


class Scorer:
    """Transactions in, decisions out, in batches: features -> rules -> score -> policy.

    Every stage but the amount policy is optional, so the same class serves a bare
    pipeline test and a full worker. The stages:

    1. **features** (`FeatureEngine`): point-in-time features, one read and one write round
       trip per batch (the registries' pointers and the rule set's list lookups ride with
       the read, `fraudstream.lookup`); transactions it rejects (e.g. dated in the future)
       never get here, see `validate`.
    2. **base score**: the active model's calibrated 0–1000 score (and its thresholds and
       reason codes) when a model is active; otherwise the amount policy's score. A shadow
       model is scored on the same batch and logged in ``Decision.shadow``.
    3. **rules** (`RuleWatcher` + `Lists`): the active rule set, reloaded between batches,
       evaluated vectorised over the batch's transaction fields, features and base score.
    4. **policy**: the rules' additions, floors and outcomes applied to the score, then the
       review/block thresholds; reasons = the model's reason codes (or the amount reason) +
       every rule that hit.
    """

    def __init__(
        self,
        policy: AmountPolicy,
        *,
        features: FeatureEngine | None = None,
        rules: RuleWatcher | None = None,
        lists: Lists | None = None,
        models: ModelWatcher | None = None,
        max_amount: float = AMOUNT_CEILING,
        on_scored: OnScored | None = None,
    ) -> None:
        self.policy = policy
        self.on_scored = on_scored
        self.max_amount = max_amount
        self.features = features
        self.rules = rules
        self.lists = lists
        self.models = models
        self.thresholds = policy.thresholds

    def validate(self, tx: Transaction) -> None:
        """Checks beyond the schema that the stages need (e.g. event time not in the future).

        Raises:
            SchemaError: naming the field; the caller dead-letters the transaction.
        """
        if tx.amount > self.max_amount:
            raise SchemaError(
                "amount", f"must be at most {self.max_amount:g} (max_amount), got {tx.amount:g}"
            )
        if self.features is not None:
            self.features.check(tx)

    def validate_label(self, label: Label) -> None:
        """What the feature state needs of a label (a fraud label names its terminal …).

        Raises:
            SchemaError: naming the field; the caller dead-letters the label (the API
                refuses it with 422 instead of queueing what the workers would refuse).
        """
        if self.features is None:
            return
        self.features.check_label(label)
        horizon = self.features.clock() + self.features.max_future_skew_s
        for name, stamp in (
            ("reported_at", label.reported_at),
            ("tx_timestamp", label.tx_timestamp),
        ):
            if stamp is not None and stamp.timestamp() > horizon:
                raise SchemaError(name, f"in the future: {stamp.isoformat()}")

    def apply_labels(self, labels: Sequence[Label]) -> None:
        """Late ground truth: updates label-dependent features (terminal risk)."""
        if self.features is not None and labels:
            self.features.apply_labels(labels)

    def score_batch(
        self,
        transactions: Sequence[Transaction],
        arrived_at: Sequence[float] | None = None,
        labels: Sequence[Label] = (),
    ) -> list[Decision]:
        """The decisions of `score_explained`."""
        return self.score_explained(transactions, arrived_at, labels).decisions

    def score_explained(
        self,
        transactions: Sequence[Transaction],
        arrived_at: Sequence[float] | None = None,
        labels: Sequence[Label] = (),
        riders: Riders | None = None,
    ) -> Scored:
        """Score a batch: its decisions, and the explanations of the flagged ones.

        Args:
            transactions: validated transactions, in the order they were received.
            arrived_at: per transaction, the epoch seconds at which it entered fraudstream
                (stream enqueue time or HTTP arrival); defaults to now. Sets ``latency_ms``.
            labels: labels that arrived before the batch, applied ahead of its features
                (in the feature read's round trip).
            riders: another stage's commands, sent in the feature read's round trip (only
                when `carries` their client), their replies delivered before any write.

        Raises:
            FeatureStoreError: the feature state could not be read or written; nothing of the
                batch was stored, so the caller may retry it.
            Exception: what ``riders`` raised on delivery (nothing of the batch was stored).
        """
        if not transactions:
            self.apply_labels(labels)
            return Scored([], {})
        # The feature state's write executes on the server while the batch is scored.
        started = time.time()
        lookup, features, looking = self._read(transactions, labels, riders)
        featured = time.time()
        base = self._base(transactions, features)
        modelled = time.time()
        verdicts = self._rules(lookup, features, base.scores, base.thresholds)
        ruled = time.time()
        self._explain_flagged(base, features, verdicts)
        explained = time.time()
        if self.features is not None and not self.features.hold_writes:
            self.features.confirm()
        now = time.time()
        if self.on_scored is not None and base.model is not None and features is not None:
            self.on_scored(features, base.scores, base.model)  # after `now`: no stage's time
        decided_at = datetime.fromtimestamp(now, UTC)
        arrivals = arrived_at if arrived_at is not None else [now] * len(transactions)
        rules_version = self.rules_version()
        batch_stages = {
            "features": _ms(featured - started - looking + now - explained),
            "model": _ms(modelled - featured + explained - ruled),
            "rules": _ms(ruled - modelled + looking),
        }
        decisions = [
            Decision(
                transaction_id=tx.transaction_id,
                score=verdict.score,
                outcome=verdict.outcome,
                reasons=base.reasons[i] + verdict.reasons,
                model_version=base.version,
                rules_version=rules_version,
                latency_ms=max(0.0, (now - arrived) * 1000),
                decided_at=decided_at,
                shadow=shadow + base.shadow[i],
                stages={"queue": _ms(max(0.0, started - arrived)), **batch_stages},
            )
            for i, (tx, (verdict, shadow), arrived) in enumerate(
                zip(transactions, verdicts, arrivals, strict=True)
            )
        ]
        explanations = {
            transactions[i].transaction_id: e
            for i, e in base.explanations.items()
            if decisions[i].outcome != "approve"
        }
        return Scored(decisions, explanations)

    def commit(self, trailer: Sequence[Command]) -> list[Any]:
        """Store the last batch's feature state held by its engine (``hold_writes``) with
        ``trailer`` in the same transaction, and return the ``trailer``'s replies
        (`FeatureEngine.confirm`). Raises as it does."""
        if self.features is None:
            raise ValueError("commit: there is no feature engine holding a write")
        return self.features.confirm(trailer)

    def carries(self, client: object) -> bool:
        """Whether riders on ``client`` can go in the feature read's round trip."""
        return self.features is not None and self.features.client is client

    def _read(
        self,
        transactions: Sequence[Transaction],
        labels: Sequence[Label],
        riders: Riders | None = None,
    ) -> tuple[Lookup, NDArray[np.float64] | None, float]:
        """The batch's look-up and features, in one round trip when the feature engine and
        the look-up share a client (the look-up rides with the feature read), and the
        seconds the look-up took on its own (the rules' stage)."""
        if riders is not None and self.features is None:
            raise ValueError("riders: there is no feature read to ride with")
        started = time.time()
        query = LookupQuery(transactions, self.models, self.rules, self.lists)
        if self.features is None or query.client is not self.features.client:
            lookup = query.run()
            looking = time.time() - started
            features = self.features.submit(transactions, labels, riders) if self.features else None
            return lookup, features, looking
        looking = time.time() - started
        both = query if riders is None else Together(riders, query)
        features = self.features.submit(transactions, labels, both)
        resolving = time.time()
        return query.resolve(), features, looking + time.time() - resolving

    def _base(
        self, transactions: Sequence[Transaction], features: NDArray[np.float64] | None
    ) -> BaseScores:
        n = len(transactions)
        model = shadow = None
        if self.models is not None and features is not None:
            model, shadow = self.models.active, self.models.shadow
        shadow_notes: list[list[str]] = [[] for _ in range(n)]
        if shadow is not None and features is not None:
            shadow_notes = [
                [f"model:{shadow.version}={s}"] for s in shadow.score(features).tolist()
            ]
        if model is None or features is None:
            scores = np.array([self.policy.score(tx.amount) for tx in transactions], dtype=float)
            reasons = [self.policy.reasons(tx.amount) for tx in transactions]
            return BaseScores(scores, reasons, "none", self.thresholds, shadow_notes)
        points = model.thresholds
        thresholds = Thresholds(
            round(points["review"]), round(points["block"]), self.policy.step_up_score
        )
        scores = model.score(features).astype(np.float64)
        reasons = [[] for _ in range(n)]
        # Contributions cost ~1 ms a row (TreeSHAP over every tree): explain the transactions
        # the model itself flags; `_explain_flagged` adds those the rules flag.
        flagged = np.flatnonzero(scores >= thresholds.review)
        base = BaseScores(scores, reasons, model.version, thresholds, shadow_notes, model)
        if flagged.size:
            _explain(base, features, flagged.tolist())
        return base

    @staticmethod
    def _explain_flagged(
        base: BaseScores,
        features: NDArray[np.float64] | None,
        verdicts: list[tuple[Verdict, list[str]]],
    ) -> None:
        """Model reason codes for transactions the rules (not the model) sent to review/block."""
        if base.model is None or features is None:
            return
        rows = [
            i for i, (v, _) in enumerate(verdicts) if v.outcome != "approve" and not base.reasons[i]
        ]
        if rows:
            _explain(base, features, rows)

    def _rules(
        self,
        lookup: Lookup,
        features: NDArray[np.float64] | None,
        base: NDArray[np.float64],
        thresholds: Thresholds,
    ) -> list[tuple[Verdict, list[str]]]:
        """Per transaction: the policy's verdict and what the shadow rules said."""
        ruleset = lookup.ruleset
        if ruleset is None:
            empty = RuleResult()
            return [(decide(empty, float(s), thresholds), []) for s in base]
        columns = lookup.columns
        if features is not None and self.features is not None:
            wanted = set(ruleset.columns)
            for j, name in enumerate(self.features.names):
                if name in wanted:
                    columns[name] = features[:, j]
        columns["model_score"] = base
        memberships = lookup.memberships
        if memberships is None:  # the rule set changed in the look-up
            memberships = self.lists.memberships(ruleset, columns) if self.lists else {}
        result = evaluate_columns(ruleset, RuleContext(columns, memberships, n=len(base)))
        return [
            (decide(r, float(score), thresholds), [f"rule:{i}" for i in r.shadow_hits])
            for r, score in zip(result.results(), base, strict=True)
        ]

    def rules_version(self) -> str:
        """The rule set in force, as decisions report it (the one the last batch ran:
        followed by its `LookupQuery`; no second GET)."""
        ruleset = self.rules.ruleset if self.rules is not None else None
        if ruleset is None:
            return self.policy.version
        return f"{ruleset.version}+{self.policy.version}"


def _explain(base: BaseScores, features: NDArray[np.float64], rows: list[int]) -> None:
    """Reason codes and explanations of ``rows``, from the model's contributions."""
    assert base.model is not None
    for i, (codes, explanation) in zip(rows, base.model.explanations(features[rows]), strict=True):
        base.reasons[i] = codes
        base.explanations[i] = explanation


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def build_scorer(settings: Settings, client: redis.Redis) -> Scorer:
    """The scorer a worker runs: the stages the settings enable, on ``client``, with the
    active model loaded.

    Raises:
        ModelError: the active model does not load, or models are stored and this host has
            no registry key; a worker or API must not start scoring without the model the
            registry names.
    """
    from fraudstream.features import default_feature_set
    from fraudstream.models import KeySource, ModelRegistry, ModelWatcher
    from fraudstream.rules import RuleSchema, default_ruleset
    from fraudstream.rules.lists import Lists
    from fraudstream.rules.registry import RuleRegistry, RuleWatcher

    models = None
    if settings.features_enabled and settings.models_enabled:
        # first: a host without the key, or a model that does not load, refuses at once,
        # not after the feature kernels compiled (seconds on a fresh install)
        source = KeySource(settings.model_registry_key, settings.data_path)
        models = ModelWatcher(ModelRegistry(client, source), default_feature_set())
        models.start()
    features = _feature_engine(settings, client) if settings.features_enabled else None
    rules = lists = None
    if settings.rules_enabled:
        schema = RuleSchema.build(features.names if features else [])
        fallback = default_ruleset(schema) if features else None
        rules = RuleWatcher(RuleRegistry(client, schema), fallback=fallback)
        lists = Lists(client)
    return Scorer(
        AmountPolicy.from_settings(settings),
        features=features,
        rules=rules,
        lists=lists,
        models=models,
        max_amount=settings.max_amount,
    )


def _feature_engine(
    settings: Settings, client: redis.Redis, *, warm_up: bool = True
) -> FeatureEngine:
    from fraudstream.features import FeatureEngine

    return FeatureEngine(
        client,
        namespace=settings.feature_namespace,
        lateness_s=settings.feature_lateness_s,
        max_future_skew_s=settings.feature_max_future_skew_s,
        ttl_s=settings.feature_ttl_s,
        warm_up=warm_up,
    )


def intake_check(settings: Settings, client: redis.Redis) -> Callable[[Transaction], None]:
    """`Scorer.validate` as the workers run it (the amount's ``max_amount``, the event time's
    skew ahead of the clock), without their model, rules or compiled kernels: ``produce``
    refuses such a row up front, naming it, instead of sending it to be dead-lettered."""
    features = (
        _feature_engine(settings, client, warm_up=False) if settings.features_enabled else None
    )
    policy = AmountPolicy.from_settings(settings)
    return Scorer(policy, features=features, max_amount=settings.max_amount).validate
