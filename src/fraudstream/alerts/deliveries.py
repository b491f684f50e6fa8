"""The delivery log (the store's ``alerts`` table): what keeps a re-delivered decision from
being alerted twice.

Per batch, before sending, every (transaction, channel) to alert is claimed with one
``INSERT … ON CONFLICT DO NOTHING`` on the table's unique key, as ``pending``; then the
statuses are read back and only ``pending`` rows are sent. After the sends each row becomes
``sent`` or ``failed`` (with its attempts, time and error). A decision delivered again
(a crash after the log was written and before the XACK, a claim by another consumer) finds
``sent`` or ``failed`` and is skipped.

The one window left is a crash *during* the send, between the receiver getting the alert
and the log saying ``sent``: the row is still ``pending`` and the alert is sent again when
the decision comes back. Delivery is at-least-once; the ``alert_id``
(``<transaction_id>:<channel>``, also the ``X-Fraudstream-Alert-Id`` header) is stable, so
a receiver can drop the copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fraudstream.store.tables import alerts

PENDING, SENT, FAILED = "pending", "sent", "failed"
Key = tuple[str, str]
"""(transaction_id, channel)"""


@dataclass(frozen=True)
class Outcome:
    transaction_id: str
    channel: str
    attempts: int
    error: str | None

    @property
    def status(self) -> str:
        return SENT if self.error is None else FAILED


def claim(connection: sa.Connection, wanted: Sequence[tuple[str, str | None, str]]) -> set[Key]:
    """Log (transaction_id, customer_id, channel) as ``pending`` unless logged already;
    returns the keys still ``pending`` (new, or left so by a crash mid-send): those to send."""
    if not wanted:
        return set()
    now = datetime.now(UTC)
    rows = [
        {"transaction_id": t, "customer_id": c, "channel": ch, "status": PENDING, "created_at": now}
        for t, c, ch in wanted
    ]
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    connection.execute(insert(alerts).on_conflict_do_nothing(), rows)
    return {
        key
        for key, status in statuses(connection, [t for t, _, _ in wanted]).items()
        if status == PENDING
    }


def statuses(connection: sa.Connection, transaction_ids: Sequence[str]) -> dict[Key, str]:
    a = alerts.c
    query = sa.select(a.transaction_id, a.channel, a.status).where(
        a.transaction_id.in_(sorted(set(transaction_ids)))
    )
    return {(row[0], row[1]): row[2] for row in connection.execute(query)}


def record(connection: sa.Connection, outcomes: Sequence[Outcome]) -> None:
    """Mark the sent and the failed, in one statement."""
    if not outcomes:
        return
    a = alerts.c
    statement = (
        alerts.update()
        .where(a.transaction_id == sa.bindparam("tx"), a.channel == sa.bindparam("ch"))
        .values(
            status=sa.bindparam("st"),
            attempts=sa.bindparam("n"),
            delivered_at=sa.bindparam("at"),
            error=sa.bindparam("err"),
        )
    )
    now = datetime.now(UTC)
    connection.execute(
        statement,
        [
            {
                "tx": o.transaction_id,
                "ch": o.channel,
                "st": o.status,
                "n": o.attempts,
                "at": now,
                "err": None if o.error is None else o.error[:256],
            }
            for o in outcomes
        ],
    )
