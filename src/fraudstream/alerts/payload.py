"""What an alert says: the decision, the transaction's amount and the customer, once per
channel (`Alert`); the decision as the alerts read it from the stream (`Decided`); and the
model's live traffic drifting from its training reference (`DriftAlert`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from fraudstream.alerts.routing import ChannelName
from fraudstream.challenges import ChallengeCode
from fraudstream.schema import Decision, Outcome


class Decided(Decision, frozen=True, kw_only=True):
    """A decision of the stream, with the transaction's customer and amount when the payload
    carries them (a scorer that adds them to `Decision` makes the store look-up needless)."""

    customer_id: str | None = None
    amount: float | None = None
    currency: str | None = None


class Customer(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Who the alert is about: the store's ``customers`` row, or only the id without one."""

    customer_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    segment: str | None = None


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """The webhook's JSON body, and what the e-mail says.

    ``alert_id`` (``<transaction_id>:<channel>``) is stable across re-sends: a receiver that
    saw it already can drop the copy (`fraudstream.alerts.deliveries` on when one happens).
    """

    alert_id: str
    channel: ChannelName
    transaction_id: str
    outcome: Outcome
    score: int
    reasons: list[str]
    decided_at: datetime
    amount: float | None
    currency: str | None
    customer: Customer | None
    routes: list[str]
    model_version: str
    rules_version: str
    challenge: ChallengeCode | None = None
    """A ``step_up``: the buyer's one-time code (the webhook's receiver relays it; the
    e-mail goes to the customer), verified by ``POST /v1/challenges/{id}/verify``."""


class DriftAlert(msgspec.Struct, frozen=True, kw_only=True):
    """The webhook's JSON body (``kind`` = ``"drift"``) when live traffic drifts from the
    active model's training reference (`fraudstream.drift.alert`).

    ``alert_id`` (``drift:<model_version>:<epoch s>``) names the episode: the PSI passed the
    threshold at that time, and no other alert is sent for it.
    """

    kind: Literal["drift"] = "drift"
    alert_id: str
    channel: ChannelName
    model_version: str
    threshold: float
    over: list[str]
    """The distributions whose PSI passed ``threshold`` (``score`` or a feature name)."""
    score_psi: float | None
    feature_psi: dict[str, float | None]
    rows: int
    """Transactions in the live windows the figures cover."""
    detected_at: datetime


def make_alert(
    decision: Decision,
    channel: ChannelName,
    routes: list[str],
    *,
    amount: float | None,
    currency: str | None,
    customer: Customer | None,
    challenge: ChallengeCode | None = None,
) -> Alert:
    return Alert(
        alert_id=f"{decision.transaction_id}:{channel}",
        channel=channel,
        transaction_id=decision.transaction_id,
        outcome=decision.outcome,
        score=decision.score,
        reasons=list(decision.reasons),
        decided_at=decision.decided_at,
        amount=amount,
        currency=currency,
        customer=customer,
        routes=routes,
        model_version=decision.model_version,
        rules_version=decision.rules_version,
        challenge=challenge,
    )


def describe_amount(alert: Alert) -> str:
    """``1,234.50 EUR``; ``amount unknown`` without one."""
    if alert.amount is None:
        return "amount unknown"
    return f"{alert.amount:,.2f} {alert.currency or ''}".rstrip()


def sample_alert(channel: ChannelName, now: datetime) -> Alert:
    """A made-up block, for `fraudstream alerts test`: ids start with ``test-``."""
    decision = Decision(
        transaction_id=f"test-{int(now.timestamp())}",
        score=950,
        outcome="block",
        reasons=["amount_over_block_limit: 1234.50 >= 1000.00", "rule:sample"],
        model_version="test",
        rules_version="test",
        latency_ms=0.0,
        decided_at=now,
    )
    customer = Customer(
        customer_id="test-customer",
        name="Test Customer",
        email="customer@example.com",
        phone="+1 555 0100",
        segment="sample",
    )
    return make_alert(decision, channel, ["test"], amount=1234.5, currency="EUR", customer=customer)
