"""Step-up challenges in SQL: a ``step_up`` decision opens one, the buyer's code (or the
clock) closes it with a final outcome, and an outbox mark says when that final decision
reached the stream.

A challenge moves only from ``pending``: to ``passed`` (the right code: approve), ``failed``
(the last allowed wrong code: block) or ``expired`` (no right code in time: block). Each move
is one conditional ``UPDATE`` that names the attempts it read (compare-and-set), so two
requests racing with codes for one challenge cannot both spend the same attempt; the loser
reads the row again. The codes themselves are never stored (`fraudstream.challenges`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import msgspec
import sqlalchemy as sa

from fraudstream.schema import Decision
from fraudstream.store.engine import as_utc
from fraudstream.store.tables import challenges
from fraudstream.store.write import insert_new

ChallengeStatus = Literal["pending", "passed", "failed", "expired"]
STATUSES: tuple[ChallengeStatus, ...] = get_args(ChallengeStatus)
FINAL_OUTCOME: dict[ChallengeStatus, str] = {
    "passed": "approve",
    "failed": "block",
    "expired": "block",
}


class Challenge(msgspec.Struct, frozen=True, kw_only=True):
    """One challenge as stored (no code: it is derived, never kept)."""

    transaction_id: str
    status: ChallengeStatus
    attempts: int
    max_attempts: int
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None = None
    final_outcome: str | None = None
    streamed_at: datetime | None = None

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts) if self.status == "pending" else 0


def open_challenges(
    connection: sa.Connection, batch: Sequence[Decision], ttl_s: int, max_attempts: int
) -> int:
    """Open a challenge for each ``step_up`` decision of the batch that has none yet, in the
    caller's transaction; returns how many were opened. The expiry counts from the decision,
    so every opener (the sink, or the API when a code comes before the sink) sets the same."""
    rows = [
        (
            d.transaction_id,
            "pending",
            0,
            max_attempts,
            d.decided_at.astimezone(UTC),
            d.decided_at.astimezone(UTC) + timedelta(seconds=ttl_s),
            None,
            None,
            None,
        )
        for d in {d.transaction_id: d for d in batch if d.outcome == "step_up"}.values()
    ]
    return insert_new(connection, challenges, rows)


def get_challenge(connection: sa.Connection, transaction_id: str) -> Challenge | None:
    query = sa.select(challenges).where(challenges.c.transaction_id == transaction_id)
    row = connection.execute(query).mappings().first()
    return None if row is None else _challenge(row)


def settle(
    connection: sa.Connection,
    seen: Challenge,
    status: ChallengeStatus,
    attempts: int,
    now: datetime,
) -> bool:
    """Move ``seen`` to ``status`` with ``attempts`` spent, if nobody moved it since it was
    read (same status, same attempts); False if someone did (read it again)."""
    values: dict[str, object] = {"status": status, "attempts": attempts}
    if status != "pending":
        values.update(resolved_at=now.astimezone(UTC), final_outcome=FINAL_OUTCOME[status])
    moved = connection.execute(
        sa.update(challenges)
        .where(
            challenges.c.transaction_id == seen.transaction_id,
            challenges.c.status == "pending",
            challenges.c.attempts == seen.attempts,
        )
        .values(**values)
    )
    return moved.rowcount == 1


def expire_due(connection: sa.Connection, now: datetime) -> int:
    """Close every pending challenge whose time is up (``expired``, final outcome block)."""
    at = now.astimezone(UTC)
    done = connection.execute(
        sa.update(challenges)
        .where(challenges.c.status == "pending", challenges.c.expires_at <= at)
        .values(status="expired", resolved_at=at, final_outcome=FINAL_OUTCOME["expired"])
    )
    return int(done.rowcount)


def unstreamed(connection: sa.Connection, resolved_before: datetime, limit: int) -> list[Challenge]:
    """Closed challenges whose final decision has not reached the stream, oldest first:
    resolved before ``resolved_before`` (the API streams its own at once; older ones were
    left behind by a failure between its commit and its stream write)."""
    query = (
        sa.select(challenges)
        .where(
            challenges.c.final_outcome.is_not(None),
            challenges.c.streamed_at.is_(None),
            challenges.c.resolved_at <= resolved_before.astimezone(UTC),
        )
        .order_by(challenges.c.resolved_at)
        .limit(limit)
    )
    return [_challenge(row) for row in connection.execute(query).mappings()]


def mark_streamed(connection: sa.Connection, transaction_ids: Sequence[str], now: datetime) -> None:
    if transaction_ids:
        connection.execute(
            sa.update(challenges)
            .where(challenges.c.transaction_id.in_(transaction_ids))
            .values(streamed_at=now.astimezone(UTC))
        )


def _challenge(row: sa.RowMapping) -> Challenge:
    values = {str(name): value for name, value in row.items()}
    for name in ("created_at", "expires_at", "resolved_at", "streamed_at"):
        values[name] = as_utc(values[name])
    return msgspec.convert(values, Challenge)
