"""One transaction as an analyst drills into it: the transaction, its stored decision (with
the feature values and contributions kept for review and block), its review or step-up
challenge, who the customer is, and the customer's latest transactions with their
outcomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa

from fraudstream.store.tables import challenges, customers, decisions, reviews, transactions

RECENT = 20


class StoredDecision(msgspec.Struct, frozen=True, kw_only=True):
    decided_at: datetime
    score: int
    outcome: str
    reasons: list[str]
    model_version: str
    rules_version: str
    latency_ms: float
    shadow: list[str] = []
    stage_ms: dict[str, float] | None = None
    features: dict[str, float | None] | None = None
    contributions: dict[str, float] | None = None


class ReviewState(msgspec.Struct, frozen=True, kw_only=True):
    review_id: int
    status: str
    assignee: str | None = None
    verdict: str | None = None


class StoredChallenge(msgspec.Struct, frozen=True, kw_only=True):
    """A step-up's challenge as stored (never its code)."""

    status: str
    attempts: int
    max_attempts: int
    expires_at: datetime
    resolved_at: datetime | None = None
    final_outcome: str | None = None


class CustomerTransaction(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    timestamp: datetime
    amount: float
    currency: str
    merchant_id: str
    channel: str
    outcome: str | None = None
    score: int | None = None


class TransactionDetail(msgspec.Struct, frozen=True, kw_only=True):
    """What the store holds about a transaction; ``None`` where it holds nothing (a decision
    streamed before its transaction, a customer never loaded)."""

    transaction_id: str
    transaction: dict[str, Any] | None = None
    decision: StoredDecision | None = None
    review: ReviewState | None = None
    challenge: StoredChallenge | None = None
    customer: dict[str, Any] | None = None
    recent: list[CustomerTransaction] = []
    """The customer's latest transactions, newest first (this one included)."""


def transaction_detail(
    connection: sa.Connection, transaction_id: str, recent: int = RECENT
) -> TransactionDetail:
    tx = _row(connection, sa.select(transactions), transactions.c.transaction_id, transaction_id)
    decision = _row(connection, sa.select(decisions), decisions.c.transaction_id, transaction_id)
    review = _row(connection, sa.select(reviews), reviews.c.transaction_id, transaction_id)
    challenge = _row(connection, sa.select(challenges), challenges.c.transaction_id, transaction_id)
    customer_id = tx["customer_id"] if tx else None
    return TransactionDetail(
        transaction_id=transaction_id,
        transaction=_present(tx) if tx else None,
        decision=_convert(decision, StoredDecision) if decision else None,
        review=_convert(review, ReviewState) if review else None,
        challenge=_convert(challenge, StoredChallenge) if challenge else None,
        customer=_customer(connection, customer_id) if customer_id else None,
        recent=_recent(connection, customer_id, recent) if customer_id else [],
    )


def _row(
    connection: sa.Connection, query: sa.Select[Any], column: sa.Column[Any], value: str
) -> dict[str, Any] | None:
    row = connection.execute(query.where(column == value).limit(1)).mappings().first()
    return {str(k): _utc(v) for k, v in row.items()} if row is not None else None


def _customer(connection: sa.Connection, customer_id: str) -> dict[str, Any]:
    found = _row(connection, sa.select(customers), customers.c.customer_id, customer_id)
    return _present(found) if found else {"customer_id": customer_id}


def _recent(connection: sa.Connection, customer_id: str, limit: int) -> list[CustomerTransaction]:
    query = (
        sa.select(
            transactions.c.transaction_id,
            transactions.c.timestamp,
            transactions.c.amount,
            transactions.c.currency,
            transactions.c.merchant_id,
            transactions.c.channel,
            decisions.c.outcome,
            decisions.c.score,
        )
        .select_from(
            transactions.outerjoin(
                decisions, decisions.c.transaction_id == transactions.c.transaction_id
            )
        )
        .where(transactions.c.customer_id == customer_id)
        .order_by(transactions.c.timestamp.desc(), transactions.c.transaction_id)
        .limit(limit)
    )
    rows = connection.execute(query).mappings()
    return [_convert({str(k): _utc(v) for k, v in r.items()}, CustomerTransaction) for r in rows]


def _present(row: dict[str, Any]) -> dict[str, Any]:
    """The row without its empty columns (a transaction without e-commerce fields)."""
    return {k: v for k, v in row.items() if v is not None}


def _convert(row: dict[str, Any], type_: type[Any]) -> Any:
    fields = set(type_.__struct_fields__)
    return msgspec.convert({k: v for k, v in row.items() if k in fields}, type_)


def _utc(value: Any) -> Any:
    """SQLite gives back naive UTC, PostgreSQL the session's zone: UTC-aware either way."""
    if not isinstance(value, datetime):
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
