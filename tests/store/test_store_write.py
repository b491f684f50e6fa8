"""Migrations and idempotent writes, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
import sqlalchemy as sa

from fraudstream.config import Settings, public_view
from fraudstream.errors import StoreError
from fraudstream.schema import Decision, Label, Transaction
from fraudstream.store import migrate, tables
from fraudstream.store.engine import create_engine, describe
from fraudstream.store.write import store_decisions, store_labels, store_transactions
from storekit import make_decisions, stored_ids


def test_migrations_create_every_table_and_are_idempotent(engine: sa.Engine) -> None:
    assert migrate.current(engine) is None
    assert migrate.upgrade(engine) == migrate.head()
    assert migrate.upgrade(engine) == migrate.head()  # a second start changes nothing
    names = set(sa.inspect(engine).get_table_names())
    assert {"transactions", "decisions", "labels", "reviews", "alerts", "customers"} <= names


def test_schema_of_the_migrations_matches_the_tables(engine: sa.Engine) -> None:
    """Every change to `tables` comes with a migration: autogenerate finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    migrate.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), tables.metadata)
    assert diff == []


def test_redelivered_decisions_are_written_once(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    first, again = make_decisions(10), make_decisions(5, start=5)
    with engine.begin() as connection:
        assert store_decisions(connection, first) == 10
    with engine.begin() as connection:
        assert store_decisions(connection, [*again, *make_decisions(3, start=20)]) == 3
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 13


def test_fast_path_stores_what_core_would(engine: sa.Engine) -> None:
    """The driver-level batch (COPY / executemany) and Core's own type processing agree,
    value for value, read back through Core."""
    migrate.upgrade(engine)
    items = make_decisions(6)
    with engine.begin() as connection:
        store_decisions(connection, items[:3])
        core = [_core_row(d) for d in items[3:]]
        connection.execute(sa.insert(tables.decisions), core)
    with engine.connect() as connection:
        rows = connection.execute(sa.select(tables.decisions).order_by("decided_at")).all()
    back = [
        Decision(
            transaction_id=r.transaction_id,
            score=r.score,
            outcome=r.outcome,
            reasons=r.reasons,
            model_version=r.model_version,
            rules_version=r.rules_version,
            latency_ms=r.latency_ms,
            decided_at=_aware(r.decided_at),
            shadow=r.shadow,
            stages=r.stage_ms or {},
        )
        for r in rows
    ]
    assert back == items
    assert [r.stage_ms is None for r in rows] == [not d.stages for d in items]  # SQL NULL
    assert all(r.features is None for r in rows)


def _core_row(decision: Decision) -> dict[str, object]:
    row = msgspec.structs.asdict(decision)
    row["stage_ms"] = row.pop("stages") or None
    return row


def test_transactions_and_labels_are_written_once(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    tx = Transaction(
        transaction_id="tx-1",
        timestamp=make_decisions(1)[0].decided_at,
        customer_id="c-1",
        terminal_id="t-1",
        merchant_id="m-1",
        amount=12.5,
        currency="EUR",
        channel="ecommerce",
        ip="10.0.0.1",
    )
    label = Label(transaction_id="tx-1", is_fraud=True, reported_at=tx.timestamp)
    review = Label(transaction_id="tx-1", is_fraud=False, reported_at=tx.timestamp, source="review")
    for _ in range(2):
        with engine.begin() as connection:
            store_transactions(connection, [tx])
            store_labels(connection, [label, review])
    with engine.connect() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(tables.transactions)) == 1
        assert connection.scalar(sa.select(sa.func.count()).select_from(tables.labels)) == 2


def _aware(moment: datetime) -> datetime:
    """SQLite hands stored (UTC) times back naive."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_database_url_password_is_never_shown() -> None:
    url = "postgresql://fraud:s3cret@db.example/fraud"
    assert "s3cret" not in public_view(Settings(database_url=url))["database_url"]
    assert "s3cret" not in describe(create_engine(url))


def test_unsupported_database_is_refused_naming_the_setting() -> None:
    with pytest.raises(StoreError, match="^database_url: only sqlite and postgresql"):
        create_engine("mysql://fraud@db.example/fraud")
    with pytest.raises(StoreError, match="^database_url: not a database URL"):
        create_engine("not a url")
