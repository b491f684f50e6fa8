"""Labels in the system of record: every label published (chargebacks, review verdicts) is
stored once by the sink, on SQLite and PostgreSQL, whatever the workers did with it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa

from fraudstream.config import Settings
from fraudstream.schema import Label
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.store.sink import SINK_GROUP, Sink, SinkOptions
from fraudstream.store.tables import labels
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions
from storekit import T0, make_decisions, publish

KEYS = StreamKeys("tx", 4)
OPTIONS = SinkOptions(batch_size=100, block_ms=50, progress_s=0.0)


def make_labels(n: int) -> list[Label]:
    """Chargebacks for ``tx-0 … tx-{n-1}``, every fourth a review verdict instead."""
    return [
        Label(
            transaction_id=f"tx-{i}",
            is_fraud=i % 2 == 0,
            reported_at=T0 + timedelta(days=2),
            source="review" if i % 4 == 3 else "chargeback",
            customer_id=f"c{i}",
            terminal_id=f"t{i % 5}",
            tx_timestamp=T0,
            fraud_scenario=1 if i % 2 == 0 else None,
        )
        for i in range(n)
    ]


def stored_labels(engine: sa.Engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(labels.c.transaction_id, labels.c.source, labels.c.is_fraud)
        )
        return sorted((t, s, f) for t, s, f in rows)


def run_sink(client: redis.Redis, engine: sa.Engine) -> Any:
    return Sink(client, engine, KEYS, OPTIONS, consumer="sink:test").run(
        burst=True, handle_signals=False
    )


def test_every_label_is_stored_once_though_the_workers_deleted_it(
    client: redis.Redis, engine: sa.Engine
) -> None:
    sent = make_labels(150)
    Producer(client, KEYS).send_labels([*sent, *sent[:20]])  # 20 published twice
    worker = Worker(client, KEYS, Scorer(AmountPolicy.from_settings(Settings())), WorkerOptions())
    assert worker.run(burst=True, handle_signals=False).labels == 170
    assert client.xlen(KEYS.labels) == 0  # applied and deleted by the workers
    publish(client, KEYS.decisions, make_decisions(30))
    stats = run_sink(client, engine)
    assert stored_labels(engine) == sorted((x.transaction_id, x.source, x.is_fraud) for x in sent)
    assert (stats.stored, stats.labels_stored) == (30, 150)
    assert run_sink(client, engine).labels_stored == 0
    for stream in (KEYS.decisions, KEYS.label_log):
        info: Any = client.xpending(stream, SINK_GROUP)
        assert info["pending"] == 0


def test_a_label_stored_is_read_back_whole(client: redis.Redis, engine: sa.Engine) -> None:
    [label] = make_labels(1)
    Producer(client, KEYS).send_labels([label])
    run_sink(client, engine)
    with engine.connect() as connection:
        row = connection.execute(sa.select(labels)).mappings().one()
    assert (row["customer_id"], row["terminal_id"], row["fraud_scenario"]) == ("c0", "t0", 1)
    assert row["reported_at"].replace(tzinfo=None) == label.reported_at.replace(tzinfo=None)


def test_an_undecodable_label_is_dead_lettered_and_the_rest_stored(
    client: redis.Redis, engine: sa.Engine
) -> None:
    Producer(client, KEYS).send_labels(make_labels(3))
    client.xadd(KEYS.label_log, {PAYLOAD: b'{"transaction_id": "x"}'})
    stats = run_sink(client, engine)
    assert (stats.labels_stored, stats.dead_lettered) == (3, 1)
    dead: Any = client.xrange(KEYS.deadletter)
    assert dead[0][1][b"stream"] == KEYS.label_log.encode()
    assert b"is_fraud" in dead[0][1][b"reason"]
