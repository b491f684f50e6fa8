"""The analysts' review queue in SQL: a ``review`` decision opens a row, an analyst claims
it and resolves it with a verdict, and the verdict is kept as a `Label` (source ``review``).

Every change is one conditional ``UPDATE`` (the row moves only from the state the caller may
move it from), so two analysts racing for one review cannot both win; the loser reads the
row again to learn why (`ConflictError`). The amount, customer, terminal and time of a
reviewed transaction come from the ``transactions`` table when it holds the transaction, and
are ``None`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar, get_args

import msgspec
import sqlalchemy as sa

from fraudstream.errors import ConflictError, NotFoundError, SchemaError
from fraudstream.schema import Decision, Label
from fraudstream.store.engine import as_utc
from fraudstream.store.tables import decisions, reviews, transactions
from fraudstream.store.write import store_labels

ReviewStatus = Literal["open", "claimed", "resolved"]
STATUSES: tuple[ReviewStatus, ...] = get_args(ReviewStatus)
Verdict = Literal["fraud", "genuine"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
REVIEW_ID_MAX = 2**31 - 1
"""Review ids are SQL ``INTEGER``s (32 bits on PostgreSQL): a larger one names no review (and
past 64 bits the driver refuses to send it at all)."""
MAX_LIMIT = 1000
S = TypeVar("S", bound=str)


class Review(msgspec.Struct, frozen=True, kw_only=True):
    """One review with what an analyst needs to judge it: the decision's score and reasons,
    and, when the store holds the transaction, its amount and customer."""

    review_id: int
    transaction_id: str
    status: ReviewStatus
    created_at: datetime
    """When the transaction was decided (the queue is oldest first)."""
    updated_at: datetime
    score: int
    outcome: str
    reasons: list[str]
    assignee: str | None = None
    verdict: Verdict | None = None
    note: str | None = None
    amount: float | None = None
    customer_id: str | None = None
    terminal_id: str | None = None
    tx_timestamp: datetime | None = None


def open_reviews(connection: sa.Connection, batch: Sequence[Decision]) -> int:
    """Open a review for each ``review`` decision of the batch that has none yet, in the
    caller's transaction; returns how many were opened.

    Idempotent without a unique key (a decision delivered twice, even twice in one batch,
    opens one review): the sink stores the decisions first in the same transaction, so a
    second sink holding the same entries waits on the decisions' keys until the first
    commits, and then finds its reviews.
    """
    wanted = {d.transaction_id: d for d in batch if d.outcome == "review"}
    if not wanted:
        return 0
    has_one = sa.select(reviews.c.transaction_id).where(reviews.c.transaction_id.in_(wanted))
    known = set(connection.scalars(has_one))
    rows = [_open_row(d) for tx, d in wanted.items() if tx not in known]
    if rows:
        connection.execute(sa.insert(reviews), rows)
    return len(rows)


def _open_row(decision: Decision) -> dict[str, Any]:
    at = decision.decided_at.astimezone(UTC)
    return {
        "transaction_id": decision.transaction_id,
        "status": "open",
        "created_at": at,
        "updated_at": at,
    }


_COLUMNS = (
    reviews.c.review_id,
    reviews.c.transaction_id,
    reviews.c.status,
    reviews.c.created_at,
    reviews.c.updated_at,
    decisions.c.score,
    decisions.c.outcome,
    decisions.c.reasons,
    reviews.c.assignee,
    reviews.c.verdict,
    reviews.c.note,
    transactions.c.amount,
    transactions.c.customer_id,
    transactions.c.terminal_id,
    transactions.c.timestamp.label("tx_timestamp"),
)
_SELECT = sa.select(*_COLUMNS).select_from(
    reviews.join(decisions, decisions.c.transaction_id == reviews.c.transaction_id).outerjoin(
        transactions, transactions.c.transaction_id == reviews.c.transaction_id
    )
)


def list_reviews(
    connection: sa.Connection, status: ReviewStatus = "open", limit: int = 100
) -> list[Review]:
    """Reviews in ``status``, oldest decision first (ties by id)."""
    query = (
        _SELECT.where(reviews.c.status == status)
        .order_by(reviews.c.created_at, reviews.c.review_id)
        .limit(limit)
    )
    return [_review(row) for row in connection.execute(query).mappings()]


def get_review(connection: sa.Connection, review_id: int) -> Review:
    """Raises:
    NotFoundError: ``review_id`` naming the id.
    """
    row = None
    if 1 <= review_id <= REVIEW_ID_MAX:
        query = _SELECT.where(reviews.c.review_id == review_id)
        row = connection.execute(query).mappings().first()
    if row is None:
        raise NotFoundError("review_id", f"no review {review_id}")
    return _review(row)


def claim(connection: sa.Connection, review_id: int, assignee: str, now: datetime) -> Review:
    """Take an open review (claiming one's own claim again changes nothing).

    Raises:
        NotFoundError: no such review.
        ConflictError: claimed by someone else, or resolved.
    """
    _move(connection, review_id, assignee, status="claimed", updated_at=now.astimezone(UTC))
    return get_review(connection, review_id)


def resolve(
    connection: sa.Connection,
    review_id: int,
    assignee: str,
    verdict: Verdict,
    note: str,
    now: datetime,
) -> tuple[Review, Label]:
    """Close an open review, or one's own claim, with a verdict, and store the verdict as a
    `Label` (source ``review``, one per transaction) in the same transaction.

    Raises:
        NotFoundError: no such review.
        ConflictError: claimed by someone else, or resolved already.
    """
    at = now.astimezone(UTC)
    _move(
        connection,
        review_id,
        assignee,
        status="resolved",
        verdict=verdict,
        note=note or None,
        updated_at=at,
    )
    review = get_review(connection, review_id)
    label = Label(
        transaction_id=review.transaction_id,
        is_fraud=verdict == "fraud",
        reported_at=at,
        source="review",
        customer_id=review.customer_id,
        terminal_id=review.terminal_id,
        tx_timestamp=review.tx_timestamp,
    )
    store_labels(connection, [label])
    return review, label


def _move(connection: sa.Connection, review_id: int, assignee: str, **values: Any) -> None:
    """The one ``UPDATE`` that may change a review: from open, or from the caller's claim."""
    if not 1 <= review_id <= REVIEW_ID_MAX:
        raise NotFoundError("review_id", f"no review {review_id}")
    mine = sa.and_(reviews.c.status == "claimed", reviews.c.assignee == assignee)
    moved = connection.execute(
        sa.update(reviews)
        .where(reviews.c.review_id == review_id, sa.or_(reviews.c.status == "open", mine))
        .values(assignee=assignee, **values)
    )
    if moved.rowcount != 1:
        raise _refusal(get_review(connection, review_id))


def _refusal(review: Review) -> ConflictError:
    if review.status == "resolved":
        by = f" by {review.assignee!r}" if review.assignee else ""
        problem = f"review {review.review_id} is resolved already ({review.verdict}{by})"
    else:
        problem = f"review {review.review_id} is claimed by {review.assignee!r}"
    return ConflictError("review_id", problem)


def check_status(status: str) -> ReviewStatus:
    """Raises:
    SchemaError: ``status`` naming the valid ones.
    """
    return _one_of("status", status, STATUSES)


def check_verdict(verdict: str) -> Verdict:
    """Raises:
    SchemaError: ``verdict`` naming the valid ones.
    """
    return _one_of("verdict", verdict, VERDICTS)


def _one_of(field: str, value: str, choices: tuple[S, ...]) -> S:
    """``value`` as the choice it equals (typed as the choices are)."""
    for known in choices:
        if value == known:
            return known
    raise SchemaError(field, f"must be one of {', '.join(choices)}, got {value[:32]!r}")


def check_limit(limit: int) -> int:
    """Raises:
    SchemaError: ``limit`` out of 1..`MAX_LIMIT`.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise SchemaError("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _review(row: sa.RowMapping) -> Review:
    values = {str(name): value for name, value in row.items()}
    for name in ("created_at", "updated_at", "tx_timestamp"):
        values[name] = as_utc(values[name])
    return msgspec.convert(values, Review)
