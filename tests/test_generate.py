from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import redis

from fraudstream.errors import ConfigError
from fraudstream.generate import GenerateOptions, encode_rows, run, select
from fraudstream.schema import decode_label, decode_transaction
from fraudstream.simulate import SimulationConfig, simulate
from fraudstream.stream.keys import StreamKeys, partition_of
from fraudstream.stream.producer import Producer

KEYS = StreamKeys("tx", 4)


@pytest.fixture(scope="module")
def history() -> tuple[pl.DataFrame, pl.DataFrame]:
    result = simulate(
        SimulationConfig(n_customers=300, n_terminals=600, n_days=20, profile="full", seed=3)
    )
    return result.transactions, result.labels


def test_fraud_ratio_holds_over_every_prefix(history: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    picked = select(history[0], 20_000, GenerateOptions(fraud_ratio=0.2, run_id="r1"))
    assert picked.height == 20_000
    assert picked["timestamp"].is_sorted()
    assert picked["transaction_id"].n_unique() == 20_000
    assert picked["transaction_id"].str.starts_with("r1-").all()
    for prefix in (2_000, 10_000, 20_000):
        assert abs(picked.head(prefix)["is_fraud"].mean() - 0.2) < 0.03  # type: ignore[operator]


def test_short_history_is_repeated_forward_in_time(
    history: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    n = history[0].height * 2 + 10
    picked = select(history[0], n, GenerateOptions(run_id="r2"))
    assert picked.height == n
    assert picked["timestamp"].is_sorted()
    assert picked["transaction_id"].n_unique() == n


def test_labels_follow_their_transactions(history: tuple[pl.DataFrame, pl.DataFrame]) -> None:
    transactions, labels = history
    picked = select(transactions, transactions.height, GenerateOptions(run_id="r3"))
    rows = encode_rows(picked, labels, KEYS, True, 100)
    assert [t for t, _, _ in rows] == sorted(t for t, _, _ in rows)
    sent_at: dict[str, float] = {}
    n_labels = 0
    for t, stream, blob in rows:
        if stream == KEYS.labels:
            label = decode_label(blob)
            assert label.transaction_id in sent_at and sent_at[label.transaction_id] < t
            n_labels += 1
        else:
            tx = decode_transaction(blob)
            assert stream == KEYS.input(partition_of(tx.customer_id, KEYS.partitions))
            sent_at[tx.transaction_id] = t
    assert n_labels == int(picked["is_fraud"].sum()) > 0


def test_bad_options_name_the_field() -> None:
    with pytest.raises(ConfigError, match="^fraud_ratio: must be within"):
        GenerateOptions(fraud_ratio=1.5)
    with pytest.raises(ConfigError, match="^run_id:"):
        GenerateOptions(run_id="two words")


@pytest.mark.slow
def test_pacing_into_valkey_within_5_percent(
    client: redis.Redis, history: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    options = GenerateOptions(tps=2_000, duration=3, run_id="pace", batch_size=200)
    picked = select(history[0], options.rows_needed(), options)
    rows = encode_rows(picked, history[1], KEYS, False, options.batch_size)
    stats = run(Producer(client, KEYS, batch_size=200), rows, options)
    assert abs(stats.achieved_tps - 2_000) / 2_000 <= 0.05
    assert abs(stats.sent - 6_000) <= 300
    assert sum(client.xlen(s) for s in KEYS.inputs()) == stats.sent


@pytest.mark.slow
def test_simulate_then_generate_cli(tmp_path: Path, valkey_url: str, client: redis.Redis) -> None:
    env = {**os.environ, "FRAUDSTREAM_VALKEY_URL": valkey_url}
    out = tmp_path / "data"
    sim = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudstream",
            "simulate",
            "--out",
            str(out),
            "--customers",
            "200",
            "--terminals",
            "400",
            "--days",
            "10",
            "--profile",
            "full",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert sim.returncode == 0, sim.stderr
    summary = json.loads(sim.stdout)
    assert summary["profile"] == "full" and summary["transactions"] > 1000
    gen = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudstream",
            "generate",
            "--history",
            str(out),
            "--tps",
            "500",
            "--duration",
            "1",
            "--labels",
            "--run-id",
            "cli",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert gen.returncode == 0, gen.stderr
    stats = json.loads(gen.stdout)
    assert stats["run_id"] == "cli" and 400 <= stats["sent"] <= 600
    assert (
        sum(client.xlen(s) for s in StreamKeys("tx", 16).inputs()) + client.xlen("tx.labels")
        == stats["sent"]
    )


def test_generate_cli_errors_name_the_flag(tmp_path: Path) -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "fraudstream", "generate", "--pattern", "zigzag"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--pattern" in bad.stderr and "zigzag" in bad.stderr
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "fraudstream",
            "generate",
            "--history",
            str(tmp_path / "nope.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2
    assert "nope.parquet: no such file" in missing.stderr and "Traceback" not in missing.stderr
