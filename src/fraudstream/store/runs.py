"""Load-test runs in the store: written once at the end of a run, read by `monitor`.

A run is three tables (`tables.runs`, ``run_latencies``, ``run_seconds``) written in one
transaction, so a run is either stored whole or not at all. Every database error comes out as
a one-line `StoreError` naming the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from fraudstream.errors import StoreError
from fraudstream.loadtest.record import STAGES, Latency, RunRecord, Second
from fraudstream.store.engine import describe, first_line
from fraudstream.store.tables import run_latencies, run_seconds, runs

SUMMARY_COLUMNS = ("run_id", "pattern", "target_tps", "processes", "status", "started_at",
                   "elapsed_s", "sent", "decided", "dead_letters", "achieved_tps")  # fmt: skip
_COUNTS = {"runs", "sent", "decided", "dead_letters", "frauds_sent", "frauds_caught"}


@contextmanager
def _one_line(engine: sa.Engine) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise StoreError(f"{describe(engine)}: {first_line(exc)}") from None


def has_runs_table(engine: sa.Engine) -> bool:
    """False on a database never migrated to revision 0004 (no run was ever stored)."""
    with _one_line(engine):
        return sa.inspect(engine).has_table(runs.name)


def exists(engine: sa.Engine, run_id: str) -> bool:
    if not has_runs_table(engine):
        return False
    with _one_line(engine), engine.connect() as connection:
        query = sa.select(runs.c.run_id).where(runs.c.run_id == run_id)
        return connection.execute(query).first() is not None


def save(engine: sa.Engine, record: RunRecord) -> None:
    """Store ``record`` whole, or nothing.

    Raises:
        StoreError: ``run_id: …`` when a run of that id is stored already (the primary key
            refuses it, even from a run started at the same time), or the database failed.
    """
    row = {c.name: getattr(record, c.name) for c in runs.columns}
    with _one_line(engine):
        try:
            _insert(engine, record, row)
        except sa.exc.IntegrityError:
            raise StoreError(
                f"run_id: a run {record.run_id!r} is already stored in {describe(engine)}"
            ) from None


def _insert(engine: sa.Engine, record: RunRecord, row: dict[str, Any]) -> None:
    with engine.begin() as connection:
        connection.execute(runs.insert(), [row])
        lat = [{"run_id": record.run_id, **asdict(x)} for x in record.latencies]
        if lat:
            connection.execute(run_latencies.insert(), lat)
        per_second = [{"run_id": record.run_id, **asdict(s)} for s in record.seconds]
        if per_second:
            connection.execute(run_seconds.insert(), per_second)


def summaries(engine: sa.Engine, limit: int | None = None) -> list[dict[str, Any]]:
    """The runs, newest first, each with its end-to-end p50 / p99."""
    if not has_runs_table(engine):
        return []
    e2e = run_latencies.alias("e2e")
    query = (
        sa.select(*(runs.c[name] for name in SUMMARY_COLUMNS), e2e.c.p50_ms, e2e.c.p99_ms)
        .outerjoin(e2e, sa.and_(e2e.c.run_id == runs.c.run_id, e2e.c.stage == "end_to_end"))
        .order_by(runs.c.started_at.desc(), runs.c.run_id)
        .limit(limit)
    )
    with _one_line(engine), engine.connect() as connection:
        return [_utc(dict(row._mapping)) for row in connection.execute(query)]


def latest(engine: sa.Engine) -> str | None:
    newest = summaries(engine, limit=1)
    return newest[0]["run_id"] if newest else None


def load(engine: sa.Engine, run_id: str) -> RunRecord | None:
    if not has_runs_table(engine):
        return None
    with _one_line(engine), engine.connect() as connection:
        row = connection.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
        if row is None:
            return None
        lat = connection.execute(
            sa.select(run_latencies).where(run_latencies.c.run_id == run_id)
        ).all()
        per_second = connection.execute(
            sa.select(run_seconds)
            .where(run_seconds.c.run_id == run_id)
            .order_by(run_seconds.c.second)
        ).all()
    fields = _utc(dict(row._mapping))
    return RunRecord(
        **fields,
        latencies=sorted((_latency(r._mapping) for r in lat), key=_stage_order),
        seconds=[Second(**{k: v for k, v in r._mapping.items() if k != "run_id"})
                 for r in per_second],
    )  # fmt: skip


def aggregates(engine: sa.Engine) -> list[dict[str, Any]]:
    """Per pattern, then ``all``: runs, transactions, throughput and end-to-end latency."""
    if not has_runs_table(engine):
        return []
    e2e = run_latencies.alias("e2e")
    figures = (
        sa.func.count().label("runs"),
        sa.func.sum(runs.c.sent).label("sent"),
        sa.func.sum(runs.c.decided).label("decided"),
        sa.func.sum(runs.c.dead_letters).label("dead_letters"),
        sa.func.sum(runs.c.frauds_sent).label("frauds_sent"),
        sa.func.sum(runs.c.frauds_caught).label("frauds_caught"),
        sa.func.avg(runs.c.achieved_tps).label("achieved_tps_avg"),
        sa.func.max(runs.c.achieved_tps).label("achieved_tps_max"),
        sa.func.avg(e2e.c.p50_ms).label("p50_ms_avg"),
        sa.func.avg(e2e.c.p99_ms).label("p99_ms_avg"),
        sa.func.max(e2e.c.p99_ms).label("p99_ms_max"),
    )
    joined = runs.outerjoin(
        e2e, sa.and_(e2e.c.run_id == runs.c.run_id, e2e.c.stage == "end_to_end")
    )
    per_pattern = (
        sa.select(runs.c.pattern, *figures)
        .select_from(joined)
        .group_by(runs.c.pattern)
        .order_by(runs.c.pattern)
    )
    overall = sa.select(sa.literal("all").label("pattern"), *figures).select_from(joined)
    with _one_line(engine), engine.connect() as connection:
        rows = [*connection.execute(per_pattern), *connection.execute(overall)]
    return [_numbers(dict(r._mapping)) for r in rows if r.runs]


def _latency(row: Any) -> Latency:
    return Latency(**{k: v for k, v in row.items() if k != "run_id"})


def _stage_order(latency: Latency) -> int:
    return STAGES.index(latency.stage) if latency.stage in STAGES else len(STAGES)


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    """SQLite gives naive datetimes back: they were stored in UTC."""
    for key, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            row[key] = value.replace(tzinfo=UTC)
    return row


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    """Sums come back as Decimal on PostgreSQL: plain ints and floats for JSON and tables."""
    out: dict[str, Any] = {"pattern": row.pop("pattern")}
    for key, value in row.items():
        if value is None:
            out[key] = None
        else:
            out[key] = int(value) if key in _COUNTS else float(value)
    return out
