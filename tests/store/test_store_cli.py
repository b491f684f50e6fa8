"""`fraudstream sink`, `db`, `history export` as a user runs them, on both dialects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import msgspec
import polars as pl
import pytest
import redis
import sqlalchemy as sa

from clikit import run_cli
from fraudstream.schema import Label, Transaction
from fraudstream.store import migrate
from fraudstream.store.challenges import get_challenge, open_challenges, settle
from fraudstream.store.write import store_decisions, store_labels, store_transactions
from metricskit import folder_samples
from storekit import T0, make_decisions, publish, stored_ids


def _env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FRAUDSTREAM_DATABASE_URL": database_url,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "data"),
        "FRAUDSTREAM_BLOCK_MS": "50",
        **extra,
    }


def test_sink_burst_prints_progress_and_figures(
    client: redis.Redis, valkey_url: str, database_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    publish(client, "tx.decisions", make_decisions(120))
    done = run_cli(
        "sink", "--burst", "--json", "--progress-s", "0",
        env=_env(database_url, tmp_path), valkey_url=valkey_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["stored"] == 120
    assert "lag 0 entries" in done.stderr.splitlines()[-1]
    assert len(stored_ids(engine)) == 120
    stored = folder_samples(tmp_path / "data" / "metrics", "fraudstream_sink_stored_total")
    assert stored == {"": 120}  # the rows it wrote, for /metrics


@pytest.mark.slow
def test_sink_killed_mid_run_and_restarted_loses_nothing(
    client: redis.Redis, valkey_url: str, database_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    n = 4000
    publish(client, "tx.decisions", make_decisions(n))
    env = {
        **os.environ,
        **_env(database_url, tmp_path, FRAUDSTREAM_SINK_BATCH_SIZE="40"),
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "sink"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not _count(engine):
            assert time.monotonic() < deadline, "the sink stored nothing"
            assert proc.poll() is None, "the sink stopped"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert _count(engine) < n, "killed too late to prove anything"
    done = run_cli(
        "sink", "--burst", "--json", env=_env(database_url, tmp_path), valkey_url=valkey_url
    )
    assert done.returncode == 0, done.stderr
    ids = stored_ids(engine)
    assert len(ids) == len(set(ids)) == n


def _count(engine: sa.Engine) -> int:
    try:
        return len(stored_ids(engine))
    except sa.exc.DBAPIError:  # tables not created yet
        return 0


def test_db_upgrade_and_status(database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path)
    before = run_cli("db", "status", "--json", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["current"] is None
    assert run_cli("db", "upgrade", env=env).returncode == 0
    after = json.loads(run_cli("db", "status", "--json", env=env).stdout)
    assert after["current"] == after["head"] == migrate.head()


def test_history_export_writes_the_period_with_transactions_and_labels(
    database_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    migrate.upgrade(engine)
    items = make_decisions(10)
    items[5] = msgspec.structs.replace(items[5], outcome="step_up")  # its challenge passes
    items[6] = msgspec.structs.replace(items[6], outcome="step_up")  # still open
    txs = [_transaction(d.transaction_id, i) for i, d in enumerate(items)]
    with engine.begin() as connection:
        store_decisions(connection, items)
        store_transactions(connection, txs[:8])  # two decisions without their transaction
        store_labels(connection, [Label(transaction_id="tx-3", is_fraud=True, reported_at=T0)])
        open_challenges(connection, items[5:7], ttl_s=300, max_attempts=3)
        seen = get_challenge(connection, "tx-5")
        assert seen is not None and settle(connection, seen, "passed", 1, T0)
    out = tmp_path / "h.parquet"
    start, end = T0 + timedelta(seconds=2), T0 + timedelta(seconds=9)
    done = run_cli(
        "history", "export", "--out", str(out), "--json",
        "--from", start.isoformat(), "--to", end.replace(tzinfo=None).isoformat(),
        env=_env(database_url, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 7
    frame = pl.read_parquet(out)
    assert frame["transaction_id"].to_list() == [f"tx-{i}" for i in range(2, 9)]
    assert frame["decided_at"].dtype == pl.Datetime("us", "UTC")
    assert frame["decided_at"][0] == start
    assert frame["amount"].to_list() == [float(i) for i in range(2, 8)] + [None]
    assert frame["is_fraud"].to_list() == [None, True, None, None, None, None, None]
    outcomes = dict(zip(frame["transaction_id"], frame["final_outcome"], strict=True))
    assert (outcomes["tx-4"], outcomes["tx-5"], outcomes["tx-6"]) == (
        "review",
        "approve",
        "step_up",
    )
    assert frame.filter(pl.col("transaction_id") == "tx-3")["reasons"].to_list() == [[]]


def test_history_export_refuses_an_empty_period(database_url: str, tmp_path: Path) -> None:
    done = run_cli(
        "history", "export", "--out", str(tmp_path / "h.parquet"),
        "--from", "2026-03-02", "--to", "2026-03-01", env=_env(database_url, tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert "--to" in done.stderr


def _transaction(transaction_id: str, i: int) -> Transaction:
    return Transaction(
        transaction_id=transaction_id,
        timestamp=T0 + timedelta(seconds=i),
        customer_id=f"c-{i % 3}",
        terminal_id="t-1",
        merchant_id="m-1",
        amount=float(i),
        currency="EUR",
        channel="card_present",
    )


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql://fraud:s3cret@/fraud?host={tmp_path}"  # no server on that socket
    done = run_cli("history", "export", "--out", str(tmp_path / "h.parquet"), "--database", url)
    assert done.returncode == 2
    assert done.stderr.startswith("error: database_url: ")
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
