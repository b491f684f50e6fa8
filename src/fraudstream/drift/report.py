"""Per-week precision and recall of a model's flagged decisions, once labels have arrived.

From the SQL store: a decision is **flagged** when its outcome is anything but ``approve``
(step-up, review, block: the console's meaning too); a transaction is **fraud** when any
label of it (chargeback, analyst) says so, and genuine otherwise (labels of genuine
transactions rarely arrive). Per ISO week of ``decided_at`` (UTC, Monday first):
precision = caught / flagged, recall = caught / frauds. Chargebacks come days after the
transaction, so a week whose last day is less than ``label_delay_days`` ago is marked
incomplete: its recall can only rise.

One SQL query groups by day (a few rows per day whatever the volume); weeks are summed here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from fraudstream.store.tables import decisions, labels

LABEL_DELAY_DAYS = 7


@dataclass(frozen=True)
class Week:
    week: date
    """Its Monday."""
    decisions: int
    flagged: int
    frauds: int
    caught: int
    """Flagged and fraud."""
    complete: bool
    """The labels of every day of the week have had ``label_delay_days`` to arrive."""

    @property
    def precision(self) -> float | None:
        return self.caught / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.frauds if self.frauds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "week": self.week.isoformat(),
            "precision": self.precision,
            "recall": self.recall,
        }


def weekly(
    engine: sa.Engine,
    model_version: str | None,
    *,
    now: datetime | None = None,
    label_delay_days: int = LABEL_DELAY_DAYS,
) -> list[Week]:
    """The weeks of ``model_version``'s decisions (None: every model's), oldest first."""
    today = (now or datetime.now(UTC)).date()
    days: dict[date, list[int]] = {}
    with engine.connect() as connection:
        for day, n, flagged, frauds, caught in connection.execute(_per_day(engine, model_version)):
            days[_as_date(day)] = [int(n), int(flagged or 0), int(frauds or 0), int(caught or 0)]
    weeks: dict[date, list[int]] = {}
    for day, counts in days.items():
        total = weeks.setdefault(day - timedelta(days=day.weekday()), [0, 0, 0, 0])
        for i, value in enumerate(counts):
            total[i] += value
    return [
        Week(
            monday,
            decisions=counts[0],
            flagged=counts[1],
            frauds=counts[2],
            caught=counts[3],
            complete=monday + timedelta(days=6 + label_delay_days) < today,
        )
        for monday, counts in sorted(weeks.items())
    ]


def _per_day(engine: sa.Engine, model_version: str | None) -> sa.Select[Any]:
    d = decisions.c
    fraud_ids = (
        sa.select(labels.c.transaction_id)
        .where(labels.c.is_fraud)
        .group_by(labels.c.transaction_id)
        .subquery()
    )
    flagged = sa.case((d.outcome != "approve", 1), else_=0)
    fraud = sa.case((fraud_ids.c.transaction_id.is_not(None), 1), else_=0)
    both = flagged * fraud
    day = _day(engine, d.decided_at).label("day")
    query = (
        sa.select(day, sa.func.count(), *(sa.func.sum(c) for c in (flagged, fraud, both)))
        .select_from(decisions.outerjoin(fraud_ids, fraud_ids.c.transaction_id == d.transaction_id))
        .group_by(day)
    )
    return query if model_version is None else query.where(d.model_version == model_version)


def _day(engine: sa.Engine, column: Any) -> Any:
    """The UTC day of a time column: SQLite stores UTC text, PostgreSQL a ``timestamptz``
    whose ``date()`` would follow the session's zone."""
    if engine.dialect.name == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", column))
    return sa.func.date(column)


def _as_date(value: object) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
