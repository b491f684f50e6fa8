"""The sink on SQLite and PostgreSQL: stores everything once, survives crashes and outages."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from fraudstream.config import Settings
from fraudstream.schema import Explanation, encode
from fraudstream.store import migrate, tables
from fraudstream.store.lag import measure
from fraudstream.store.scratch import ScratchPostgres
from fraudstream.store.sink import SINK_GROUP, Sink, SinkOptions, _Batch
from fraudstream.stream.commit import decision_entry
from fraudstream.stream.keys import EXPLAIN, PAYLOAD, TX, StreamKeys
from fraudstream.stream.producer import Producer
from storekit import make_decisions, publish, stored_ids
from test_stream import _txs, _worker

KEYS = StreamKeys("tx", 4)
OPTIONS = SinkOptions(batch_size=100, block_ms=50, claim_idle_ms=60_000, progress_s=0.0)


def make_sink(client: redis.Redis, engine: sa.Engine, **kwargs: object) -> Sink:
    return Sink(client, engine, KEYS, OPTIONS, consumer="sink:test", **kwargs)  # type: ignore[arg-type]


def test_sink_stores_every_decision_once_and_acks(client: redis.Redis, engine: sa.Engine) -> None:
    publish(client, KEYS.decisions, make_decisions(250))
    stats = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (stats.stored, stats.duplicates) == (250, 0)
    assert sorted(stored_ids(engine)) == sorted(f"tx-{i}" for i in range(250))
    assert measure(client, KEYS.decisions, SINK_GROUP).entries == 0
    publish(client, KEYS.decisions, make_decisions(10, start=250))
    again = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (again.stored, again.duplicates) == (10, 0)


def test_lag_counts_what_is_not_stored(client: redis.Redis, engine: sa.Engine) -> None:
    sink = make_sink(client, engine)
    sink.bootstrap()
    publish(client, KEYS.decisions, make_decisions(30))
    assert measure(client, KEYS.decisions, SINK_GROUP).entries == 30
    sink.run(burst=True, handle_signals=False)
    assert measure(client, KEYS.decisions, SINK_GROUP).entries == 0


def test_decisions_trimmed_before_they_were_stored_are_counted_as_lost(
    client: redis.Redis, engine: sa.Engine
) -> None:
    sink = make_sink(client, engine)
    sink.bootstrap()
    publish(client, KEYS.decisions, make_decisions(100))
    client.xtrim(KEYS.decisions, maxlen=40, approximate=False)  # decisions_maxlen at work
    assert measure(client, KEYS.decisions, SINK_GROUP).trimmed == 60
    stats = sink.run(burst=True, handle_signals=False)
    assert (stats.stored, stats.lost) == (40, 60)


class Crash(Exception):
    """The process dies here."""


class CrashBeforeAck(Sink):
    """Commits its first batch to the database, then dies before the XACK."""

    def _ack(self, batch: _Batch) -> None:
        raise Crash


def crash_after_first_commit(client: redis.Redis, engine: sa.Engine, consumer: str) -> None:
    """250 decisions published; a sink called ``consumer`` stored 100 and died unacked."""
    publish(client, KEYS.decisions, make_decisions(250))
    crashing = CrashBeforeAck(client, engine, KEYS, OPTIONS, consumer=consumer)
    with pytest.raises(Crash):
        crashing.run(burst=True, handle_signals=False)
    assert len(stored_ids(engine)) == 100  # committed, not acked


def test_redelivery_after_a_crash_between_commit_and_ack_writes_nothing_twice(
    client: redis.Redis, engine: sa.Engine
) -> None:
    crash_after_first_commit(client, engine, "sink:test")
    stats = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (stats.stored, stats.duplicates) == (150, 100)
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 250


def test_entries_another_sink_left_pending_are_claimed(
    client: redis.Redis, engine: sa.Engine
) -> None:
    crash_after_first_commit(client, engine, "sink:other-host")
    left: Any = client.xpending_range(KEYS.decisions, SINK_GROUP, "-", "+", 1000)
    ids = [p["message_id"] for p in left]
    # As if the other host had been gone for a minute:
    client.xclaim(KEYS.decisions, SINK_GROUP, "sink:other-host", 0, ids, idle=60_000)
    patient = SinkOptions(batch_size=100, block_ms=50, claim_idle_ms=30_000, progress_s=0.0)
    stats = Sink(client, engine, KEYS, patient, consumer="sink:test").run(
        burst=True, handle_signals=False
    )
    assert stats.claimed == len(ids) >= 100
    assert stats.duplicates == 100  # the first batch was committed before the crash
    stored = stored_ids(engine)
    assert len(stored) == len(set(stored)) == 250


class LoseValkeyAtFirstAck(Sink):
    """The connection drops after the first batch is committed, before its XACK."""

    lost = False

    def _ack(self, batch: _Batch) -> None:
        if not self.lost:
            self.lost = True
            raise redis.ConnectionError("connection reset by peer")
        super()._ack(batch)


def test_a_batch_not_acked_for_a_lost_connection_is_read_again_at_once(
    client: redis.Redis, engine: sa.Engine
) -> None:
    """Not after ``claim_idle_ms``: our own pending entries are swept again on reconnect."""
    publish(client, KEYS.decisions, make_decisions(250))
    options = SinkOptions(batch_size=100, block_ms=50, claim_idle_ms=2_000, progress_s=0.0)
    sink = LoseValkeyAtFirstAck(client, engine, KEYS, options, consumer="sink:test")
    stats = sink.run(burst=True, handle_signals=False)
    assert (stats.stored, stats.duplicates, stats.claimed) == (250, 100, 0)
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 250


def test_undecodable_entry_is_dead_lettered_and_the_rest_stored(
    client: redis.Redis, engine: sa.Engine
) -> None:
    publish(client, KEYS.decisions, make_decisions(5))
    client.xadd(KEYS.decisions, {PAYLOAD: b'{"transaction_id": 3}'})
    stats = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (stats.stored, stats.dead_lettered) == (5, 1)
    dead: Any = client.xrange(KEYS.deadletter)
    assert b"sink:" in dead[0][1][b"reason"]


def test_database_down_or_locked_then_back_loses_nothing(
    client: redis.Redis, engine: sa.Engine, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The sink keeps its batch while the database is unavailable (PostgreSQL stopped, the
    SQLite file locked by another writer), its lag grows, and it catches up afterwards."""
    sink = make_sink(client, engine)
    publish(client, KEYS.decisions, make_decisions(50))
    sink.run(burst=True, handle_signals=False)  # up: schema migrated, pool warm
    take_down, bring_back = _outage(engine, request)
    take_down()
    publish(client, KEYS.decisions, make_decisions(200, start=50))
    runner = threading.Thread(target=sink.run, kwargs={"burst": True, "handle_signals": False})
    runner.start()
    try:
        _until(lambda: sink.stats.db_retries >= 2)
        assert measure(client, KEYS.decisions, SINK_GROUP).entries == 200  # lag is visible
    finally:
        bring_back()
    runner.join(timeout=30)
    assert not runner.is_alive()
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == 250
    assert measure(client, KEYS.decisions, SINK_GROUP).entries == 0


def _outage(
    engine: sa.Engine, request: pytest.FixtureRequest
) -> tuple[Callable[[], None], Callable[[], None]]:
    if engine.dialect.name == "sqlite":
        locker = sqlite3.connect(str(engine.url.database), isolation_level=None)

        def lock() -> None:
            locker.execute("BEGIN EXCLUSIVE")

        def unlock() -> None:
            locker.execute("COMMIT")
            locker.close()

        return lock, unlock
    server = request.getfixturevalue("postgres")
    assert isinstance(server, ScratchPostgres), "the outage test needs the scratch cluster"

    def restart() -> None:
        server.start()

    return server.stop, restart


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_migrations_run_on_start(client: redis.Redis, engine: sa.Engine) -> None:
    make_sink(client, engine).run(burst=True, handle_signals=False)
    assert migrate.current(engine) == migrate.head()


def test_transactions_stream_with_their_decisions_and_are_stored_with_them(
    client: redis.Redis, engine: sa.Engine, settings: Settings
) -> None:
    """A worker streams each decision with its transaction as received; the sink stores
    both in one database transaction. A transaction that cannot be read back is told of in
    a dead letter, and its decision is kept."""
    txs = _txs(40, customers=7)
    Producer(client, KEYS).send(txs)
    _worker(client, settings).run(burst=True, handle_signals=False)
    decision = make_decisions(1, start=99)[0]
    client.xadd(KEYS.decisions, {PAYLOAD: encode(decision), TX: b'{"amount": -1}'})
    stats = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (stats.stored, stats.transactions, stats.dead_lettered) == (41, 40, 1)
    with engine.connect() as connection:
        t, d = tables.transactions.c, tables.decisions.c
        query = sa.select(t.transaction_id, t.amount).join(
            tables.decisions, d.transaction_id == t.transaction_id
        )
        rows = connection.execute(query).all()
    assert sorted(rows) == sorted((t.transaction_id, t.amount) for t in txs)
    dead: Any = client.xrange(KEYS.deadletter)
    assert b"transaction: " in dead[-1][1][b"reason"]


def _migrate_at(url: str, moment: float) -> object:
    """In a process of its own (Alembic's context is per process): migrate at ``moment``."""
    from fraudstream.store.engine import create_engine

    engine = create_engine(url, busy_timeout_ms=20_000)
    time.sleep(max(0.0, moment - time.time()))
    try:
        return migrate.upgrade(engine)
    except Exception as exc:  # noqa: BLE001 (returned, shown by the assertion)
        return repr(exc)
    finally:
        engine.dispose()


def test_consumers_migrating_a_new_database_at_once_all_start(database_url: str) -> None:
    """A sink and an alerts consumer started together on a new database race to migrate
    it: the loser finds the schema the winner made, it does not stop."""
    moment = time.time() + 2.0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        results = list(pool.map(_migrate_at, [database_url] * 3, [moment] * 3))
    assert results == [migrate.head()] * 3


def test_a_flagged_decisions_explanation_is_stored_in_its_row(
    client: redis.Redis, engine: sa.Engine
) -> None:
    flagged, approved, garbled = make_decisions(3, start=1)  # review, block, approve
    why = Explanation(
        features={"amount": 1240.0, "customer_tx_count_1h": None},
        contributions={"amount": 0.83, "terminal_risk_7d": -0.12},
    )
    client.xadd(KEYS.decisions, decision_entry(flagged, None, why))
    client.xadd(KEYS.decisions, decision_entry(approved, None))
    client.xadd(KEYS.decisions, {PAYLOAD: encode(garbled), EXPLAIN: b"{not json"})
    stats = make_sink(client, engine).run(burst=True, handle_signals=False)
    assert (stats.stored, stats.dead_lettered) == (3, 1)  # the garbled one is kept, told of
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(tables.decisions.c.transaction_id, tables.decisions.c.features,
                      tables.decisions.c.contributions).order_by(tables.decisions.c.transaction_id)
        ).all()  # fmt: skip
    stored = {tx: (features, contributions) for tx, features, contributions in rows}
    assert stored[flagged.transaction_id] == (why.features, why.contributions)
    assert stored[approved.transaction_id] == (None, None)
    assert stored[garbled.transaction_id] == (None, None)
    letters: Any = client.xrange(KEYS.deadletter)
    [(_, letter)] = letters
    assert b"explanation" in letter[b"reason"]


def _trickle(client: redis.Redis, engine: sa.Engine, linger_ms: int) -> Sink:
    """20 decisions, one every 25 ms, to a running sink; returns it once all are stored."""
    options = SinkOptions(batch_size=100, block_ms=50, progress_s=1e9, linger_ms=linger_ms)
    sink = Sink(client, engine, KEYS, options, consumer="sink:test")
    sink.bootstrap()
    runner = threading.Thread(target=sink.run, kwargs={"handle_signals": False})
    runner.start()
    try:
        for decision in make_decisions(20):
            publish(client, KEYS.decisions, [decision])
            time.sleep(0.025)
        _until(lambda: sink.stats.stored == 20)
    finally:
        sink.stop_requested = True
        runner.join(timeout=30)
    return sink


def test_a_sink_keeping_up_lingers_and_stores_a_trickle_in_few_transactions(
    client: redis.Redis, engine: sa.Engine
) -> None:
    """Without lingering each decision of a trickle is its own database transaction; with
    it, what arrived during the wait is stored together."""
    assert _trickle(client, engine, linger_ms=0).stats.batches >= 10
    client.delete(KEYS.decisions)
    with engine.begin() as connection:
        connection.execute(tables.decisions.delete())
    assert _trickle(client, engine, linger_ms=1_000).stats.batches <= 3


def test_a_backlog_is_read_in_full_batches_without_lingering(
    client: redis.Redis, engine: sa.Engine
) -> None:
    options = SinkOptions(batch_size=100, block_ms=50, progress_s=1e9, linger_ms=5_000)
    sink = Sink(client, engine, KEYS, options, consumer="sink:test")
    sink.bootstrap()
    publish(client, KEYS.decisions, make_decisions(300))
    runner = threading.Thread(target=sink.run, kwargs={"handle_signals": False})
    started = time.monotonic()
    runner.start()
    try:
        _until(lambda: sink.stats.stored == 300)
        assert time.monotonic() - started < 4.0  # three full batches, no 5-s wait between
    finally:
        sink.stop_requested = True
        runner.join(timeout=30)
    assert not runner.is_alive()
