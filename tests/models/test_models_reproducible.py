"""`fraudstream train` and `fraudstream evaluate` of the same model on the same file print
the same figures: both compute the test week's features over the same history before it.

The history is longer than training window + delay + test + feature lookback, so that a
command loading "what it needs from its own first day" would start at another day than the
other and its unbounded state (last-N history, time since last, first seen) would differ.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import polars as pl
import pytest
import redis

from clikit import run_cli
from fraudstream.simulate import SimulationConfig, simulate

_run = partial(run_cli, timeout=300)
LONG = SimulationConfig(n_customers=500, n_terminals=1000, n_days=140, seed=5)
"""140 days: the test week is the last, after a 7-day delay and 56 training days (the
default), so training starts on day 70 and the hygiene's first day (day 119) is ~120 days
after the data's start: more than any feature looks back."""
FIGURES = (
    "auc_roc",
    "average_precision",
    "card_precision_at_100",
    "precision",
    "recall",
    "f1",
    "review_rate",
    "fraud_amount_caught",
    "test_transactions",
    "test_frauds",
    "removed_known_compromised",
)


def _handbook_csv(path: Path) -> Path:
    """The Handbook's columns only: ids, time, amount and TX_FRAUD (no scenario, no times)."""
    frame = simulate(LONG).handbook_transactions.select(
        "TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD"
    )
    frame.write_csv(path, datetime_format="%Y-%m-%d %H:%M:%S")
    return path


def test_train_and_evaluate_print_the_same_figures_on_a_handbook_csv(
    tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    _handbook_csv(tmp_path / "H.csv")
    on = {"cwd": tmp_path, "valkey_url": valkey_url}
    trained = _run("train", "--data", "H.csv", "--json", **on)  # type: ignore[arg-type]
    assert trained.returncode == 0, trained.stderr
    t = json.loads(trained.stdout)
    evaluated = _run("evaluate", "--data", "H.csv", "--version", t["version"], "--json", **on)  # type: ignore[arg-type]
    assert evaluated.returncode == 0, evaluated.stderr
    e = json.loads(evaluated.stdout)
    assert e["protocol"] == t["protocol"]
    for key in FIGURES:
        assert e[key] == pytest.approx(t[key], abs=1e-12), key
    for key in ("auc_roc", "average_precision", "card_precision_at_100"):
        assert e["supervised_only"][key] == pytest.approx(t["supervised_only"][key], abs=1e-12)
    assert e["recall_by_scenario"] == t["recall_by_scenario"]


def test_the_history_is_longer_than_what_the_features_look_back() -> None:
    """The test above must cut history: otherwise both commands load all of it."""
    days = simulate(LONG).transactions.select(pl.col("timestamp").dt.date().n_unique()).item()
    assert days > 56 + 7 + 7 + 68
