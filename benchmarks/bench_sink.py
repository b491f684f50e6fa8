"""The SQL sink's rate into SQLite and PostgreSQL, beside a bare bulk insert of the same rows.

Run: ``python benchmarks/bench_sink.py [--n 100000] [--batch 1000] [--json]``. Per database,
in the same run: ``sink`` = `fraudstream.store.sink.Sink` draining a pre-filled
``tx.decisions`` of an embedded Valkey (XREADGROUP, decode, one transaction per batch of
idempotent inserts, XACK); ``bare`` = the same rows, already as tuples, with the driver alone
and no conflict handling: ``sqlite3`` ``executemany`` / psycopg ``COPY`` into the table, one
commit per batch. The floor the sink is measured against. SQLite is a WAL file with
``synchronous=FULL``, PostgreSQL a throw-away cluster with ``fsync`` on (durable like the
real thing). The process's garbage collector is tuned as `fraudstream sink` tunes it
(`fraudstream.gcpolicy.freeze_startup`). Median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from fraudstream.gcpolicy import freeze_startup
from fraudstream.schema import Decision, Outcome, encode
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine
from fraudstream.store.scratch import ScratchPostgres
from fraudstream.store.sink import YOUNG_GC_THRESHOLD, Sink, SinkOptions
from fraudstream.store.tables import decisions
from fraudstream.store.write import decision_values
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.valkey import EmbeddedValkey

KEYS = StreamKeys("bench", 16)
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def make(n: int) -> list[Decision]:
    outcomes: tuple[Outcome, ...] = ("approve", "approve", "approve", "review", "block")
    return [
        Decision(
            transaction_id=f"tx-{i:09d}",
            score=i % 1001,
            outcome=outcomes[i % 5],
            reasons=["amount_policy", "rule:velocity"] if i % 5 > 2 else [],
            model_version="lgbm-20260301-1",
            rules_version="default-3",
            latency_ms=1.7,
            decided_at=T0 + timedelta(milliseconds=i),
            shadow=[],
            stages={"queue": 0.9, "features": 0.5, "model": 0.2, "rules": 0.1},
        )
        for i in range(n)
    ]


def sink_rate(client: redis.Redis, engine: sa.Engine, items: list[Decision], batch: int) -> float:
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for item in items:
        pipe.xadd(KEYS.decisions, {PAYLOAD: encode(item)})
    pipe.execute()
    migrate.upgrade(engine)
    sink = Sink(client, engine, KEYS, SinkOptions(batch_size=batch, block_ms=10, progress_s=1e9))
    t0 = time.perf_counter()
    stats = sink.run(burst=True, handle_signals=False)
    seconds = time.perf_counter() - t0
    assert stats.stored == len(items), stats
    return len(items) / seconds


def bare_sqlite(path: Path, items: list[Decision], batch: int) -> float:
    migrate.upgrade(create_engine(f"sqlite:///{path}"))
    rows = [_sqlite_tuple(d) for d in items]
    names = [c.name for c in decisions.columns]
    sql = f"INSERT INTO decisions ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    t0 = time.perf_counter()
    for k in range(0, len(rows), batch):
        db.executemany(sql, rows[k : k + batch])
        db.commit()
    seconds = time.perf_counter() - t0
    db.close()
    return len(rows) / seconds


def bare_postgres(engine: sa.Engine, items: list[Decision], batch: int) -> float:
    migrate.upgrade(engine)
    rows = [_pg_tuple(d) for d in items]
    names = ", ".join(c.name for c in decisions.columns)
    raw: Any = engine.raw_connection()
    t0 = time.perf_counter()
    for k in range(0, len(rows), batch):
        with raw.cursor() as cur, cur.copy(f"COPY decisions ({names}) FROM STDIN") as copy:
            for row in rows[k : k + batch]:
                copy.write_row(row)
        raw.commit()
    seconds = time.perf_counter() - t0
    raw.close()
    return len(rows) / seconds


def _sqlite_tuple(d: Decision) -> tuple[Any, ...]:
    values = list(decision_values(d))
    values[1] = values[1].replace(tzinfo=None).isoformat(" ")
    return tuple(values)


def _pg_tuple(d: Decision) -> tuple[Any, ...]:
    return decision_values(d)


def fresh_pg(cluster: ScratchPostgres) -> sa.Engine:
    name = f"b_{uuid.uuid4().hex[:10]}"
    admin = create_engine(cluster.url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return create_engine(sa.make_url(cluster.url).set(database=name).render_as_string(False))


def one_run(
    client: redis.Redis, cluster: ScratchPostgres, tmp: Path, items: list[Decision], batch: int
) -> dict[str, float]:
    def sqlite_engine() -> sa.Engine:
        return create_engine(f"sqlite:///{tmp / uuid.uuid4().hex}.db")

    runs: dict[str, Callable[[], float]] = {
        "sqlite_sink": lambda: sink_rate(client, sqlite_engine(), items, batch),
        "sqlite_bare": lambda: bare_sqlite(tmp / f"{uuid.uuid4().hex}.db", items, batch),
        "postgresql_sink": lambda: sink_rate(client, fresh_pg(cluster), items, batch),
        "postgresql_bare": lambda: bare_postgres(fresh_pg(cluster), items, batch),
    }
    return {name: run() for name, run in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    items = make(args.n)
    # as `fraudstream sink` does; it also keeps `items` out of the collections
    freeze_startup(YOUNG_GC_THRESHOLD)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server = EmbeddedValkey(tmp / "valkey")
        info = server.ensure()
        cluster = ScratchPostgres(durable=True).start()
        try:
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
            runs = [one_run(client, cluster, tmp, items, args.batch) for _ in range(args.repeat)]
        finally:
            cluster.destroy()
            server.stop()
    figures = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"n": args.n, "batch": args.batch, "decisions_per_s": figures}))
        return
    print(f"{args.n:,} decisions, batches of {args.batch:,}, median of {args.repeat} runs")
    for key, value in figures.items():
        print(f"  {key:<16} {value:>10,.0f} decisions/s")


if __name__ == "__main__":
    main()
