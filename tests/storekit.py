"""Decisions to store, and what the store holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import sqlalchemy as sa

from fraudstream.config import Settings
from fraudstream.schema import Decision, Outcome, Transaction, encode
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine, database_url
from fraudstream.store.tables import decisions
from fraudstream.stream.keys import PAYLOAD

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_decisions(n: int, *, start: int = 0) -> list[Decision]:
    """``n`` decisions one second apart, every outcome, some with shadow verdicts."""
    outcomes: tuple[Outcome, ...] = ("approve", "review", "block")
    return [
        Decision(
            transaction_id=f"tx-{i}",
            score=i % 1001,
            outcome=outcomes[i % 3],
            reasons=["amount_policy"] if i % 3 else [],
            model_version="m-1",
            rules_version="r-1",
            latency_ms=1.25,
            decided_at=T0 + timedelta(seconds=i),
            shadow=["rule:night"] if i % 5 == 0 else [],
            stages={"queue": 0.5, "features": 0.25, "model": 0.25} if i % 2 else {},
        )
        for i in range(start, start + n)
    ]


def make_transaction(transaction_id: str, customer_id: str, terminal_id: str) -> Transaction:
    """A transaction of 1,000 EUR at `T0`, as the store would hold it."""
    return Transaction(
        transaction_id=transaction_id,
        timestamp=T0,
        customer_id=customer_id,
        terminal_id=terminal_id,
        merchant_id="m1",
        amount=1_000.0,
        currency="EUR",
        channel="ecommerce",
    )


def publish(client: redis.Redis, stream: str, items: list[Decision]) -> None:
    pipe = client.pipeline(transaction=False)
    for item in items:
        pipe.xadd(stream, {PAYLOAD: encode(item)})
    pipe.execute()


def stored_ids(engine: sa.Engine) -> list[str]:
    """Transaction ids of the stored decisions, duplicates included (there must be none)."""
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(decisions.c.transaction_id)))


@contextmanager
def migrated_store(data_dir: Path) -> Iterator[sa.Engine]:
    """The default store of ``data_dir`` (SQLite, where `fraudstream serve` finds it),
    migrated."""
    made = create_engine(database_url(Settings(data_dir=str(data_dir))))
    migrate.upgrade(made)
    try:
        yield made
    finally:
        made.dispose()
