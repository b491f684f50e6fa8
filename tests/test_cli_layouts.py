"""`train` then `evaluate` on a Sparkov-format file with no flags, as a user downloading the
public dataset would run them (the file is made up here from a simulated history)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import redis

from clikit import run_cli
from fraudstream.simulate import SimulationConfig, simulate
from layoutkit import PERSONAL, sparkov_from

_run = partial(run_cli, timeout=300)
SMALL = SimulationConfig(n_customers=100, n_terminals=200, n_days=40, seed=11)


@pytest.fixture(scope="module")
def history_rows() -> pl.DataFrame:
    return simulate(SMALL).transactions


def test_train_then_evaluate_a_sparkov_file_with_no_flags(
    tmp_path: Path, history_rows: pl.DataFrame, valkey_url: str, client: redis.Redis
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    sparkov_from(history_rows, work / "fraudTrain.csv")
    assert history_rows.height > 2_000
    args = ("--data", "fraudTrain.csv", "--train-days", "14", "--json")
    trained = _run("train", *args, cwd=work, valkey_url=valkey_url)
    assert trained.returncode == 0, trained.stderr
    said = [line for line in trained.stderr.splitlines() if "recognised" in line]
    assert said == [
        "note: fraudTrain.csv: recognised the Sparkov layout: transaction_id=trans_num, "
        "timestamp=trans_date_trans_time, customer_id=cc_num, card_id=cc_num, "
        "terminal_id=merchant, merchant_id=merchant, amount=amt, "
        "product_category=category, lat=merch_lat, lon=merch_long, is_fraud=is_fraud"
    ]
    assert trained.stderr.count("taken as UTC") == 1
    assert not [value for value in PERSONAL if value in trained.stderr + trained.stdout]
    t = json.loads(trained.stdout)
    assert 0.5 < t["auc_roc"] <= 1.0
    evaluated = _run("evaluate", *args, cwd=work, valkey_url=valkey_url)
    assert evaluated.returncode == 0, evaluated.stderr
    assert evaluated.stderr.count("recognised the Sparkov layout") == 1
    e = json.loads(evaluated.stdout)
    assert e["model_version"] == t["version"]
    assert abs(e["auc_roc"] - t["auc_roc"]) < 1e-12  # the same model on the same test week


def test_an_explicit_column_overrides_the_sparkov_layout_on_the_command_line(
    tmp_path: Path, history_rows: pl.DataFrame, valkey_url: str, client: redis.Redis
) -> None:
    path = sparkov_from(history_rows.head(300), tmp_path / "fraudTest.csv")
    out = tmp_path / "features.parquet"
    args = ("features", "backfill", "--history", str(path), "--out", str(out))
    result = _run(*args, "--column", "timestamp=unix_time", "--date-format", "epoch")
    assert result.returncode == 0, result.stderr
    assert "recognised the Sparkov layout: transaction_id=trans_num, customer_id=cc_num" in (
        result.stderr
    )
    assert "taken as UTC" not in result.stderr  # Unix time: no naive times any more
    wrong = _run(*args, "--column", "customer_id=no_such_column")
    assert wrong.returncode == 2
    assert "columns.customer_id: the file has no column 'no_such_column'" in wrong.stderr
    partial = tmp_path / "partial.csv"
    pl.read_csv(path, infer_schema=False).drop("amt").write_csv(partial)
    refused = _run("features", "backfill", "--history", str(partial), "--out", str(out))
    assert refused.returncode == 2
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: amount: required field has no column")
    assert lines[0].endswith("it looks like the Sparkov layout, which has amt")
