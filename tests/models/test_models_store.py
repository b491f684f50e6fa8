"""The store as a history source: `train`, `evaluate` and `rules backtest` on ``--database``
give what they give on the same history and labels read from files."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
import redis

from clikit import run_cli
from featkit import transactions
from fraudstream.cli.data import features_for_history
from fraudstream.models import ModelRegistry, TrainedModel
from fraudstream.schema import Label
from fraudstream.simulate import SimulationResult, write_history
from fraudstream.store import migrate
from fraudstream.store.engine import create_engine
from fraudstream.store.write import store_labels, store_transactions

_run = partial(run_cli, timeout=300)
FIGURES = ("auc_roc", "average_precision", "card_precision_at_100")
RULES = """\
mode: all_matched
rules:
  - id: busy_customer
    when: customer_tx_count_1d >= 4
    outcome: review
    score: 300
"""


@pytest.fixture
def sources(tmp_path: Path, history: SimulationResult) -> tuple[Path, str]:
    """The same history and labels as a `simulate` folder and as a SQLite store."""
    write_history(history, tmp_path / "sim", formats=("parquet",))
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    labels = [msgspec.convert(row, Label) for row in history.labels.iter_rows(named=True)]
    with engine.begin() as connection:
        store_transactions(connection, transactions(history.transactions))
        store_labels(connection, labels)
    engine.dispose()
    return tmp_path / "sim", url


def test_train_and_evaluate_from_the_store_match_the_files(
    sources: tuple[Path, str], tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    folder, url = sources
    common = ("--train-days", "21", "--json", "--no-activate")
    on = {"cwd": tmp_path, "valkey_url": valkey_url}
    from_files = _run("train", "--data", str(folder), *common, **on)  # type: ignore[arg-type]
    assert from_files.returncode == 0, from_files.stderr
    from_store = _run("train", "--database", url, *common, **on)  # type: ignore[arg-type]
    assert from_store.returncode == 0, from_store.stderr
    a, b = json.loads(from_files.stdout), json.loads(from_store.stdout)
    for key in FIGURES:
        assert b[key] == pytest.approx(a[key], abs=1e-12), key
    version = ("--version", b["version"])
    evaluated = _run("evaluate", "--database", url, *version, "--json", **on)  # type: ignore[arg-type]
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["auc_roc"] == pytest.approx(b["auc_roc"], abs=1e-12)
    both = _run("train", "--data", str(folder), "--database", url, **on)  # type: ignore[arg-type]
    assert both.returncode == 2 and "--data FILE or --database URL" in both.stderr


def test_rules_backtest_from_the_store_matches_the_files(
    sources: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = sources
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    reports = []
    for source in (("--history", str(folder)), ("--database", url)):
        done = _run("rules", "backtest", str(rules), *source, "--json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    assert reports[0]["rules"][0]["hits"] > 0
    assert reports[1] == reports[0]


def test_an_empty_store_is_one_line(tmp_path: Path, valkey_url: str, client: redis.Redis) -> None:
    # `client` flushes the session's server: models an earlier test stored under its own
    # registry key would otherwise be refused before the source is even read
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrate.upgrade(create_engine(url))
    (tmp_path / "rules.yaml").write_text(RULES)
    # the session's server: an embedded one started in tmp_path would outlive the test
    done = _run(
        "rules", "backtest", "rules.yaml", "--database", url, cwd=tmp_path, valkey_url=valkey_url
    )
    assert done.returncode == 2
    assert "no transactions stored yet" in done.stderr and "Traceback" not in done.stderr
    never = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    done = _run("train", "--database", never, cwd=tmp_path, valkey_url=valkey_url)
    assert done.returncode == 2, done.stderr
    assert "not a fraudstream store" in done.stderr and "Traceback" not in done.stderr


def test_retrain_shadows_a_new_version_and_promote_makes_it_active(
    sources: tuple[Path, str], tmp_path: Path, valkey_url: str, client: redis.Redis
) -> None:
    folder, url = sources
    on = {"cwd": tmp_path, "valkey_url": valkey_url}
    first = _run("train", "--data", str(folder), "--train-days", "14", "--json", **on)  # type: ignore[arg-type]
    assert first.returncode == 0, first.stderr
    active = json.loads(first.stdout)["version"]
    retrained = _run("retrain", "--database", url, "--train-days", "21", "--json", **on)  # type: ignore[arg-type]
    assert retrained.returncode == 0, retrained.stderr
    r = json.loads(retrained.stdout)
    assert r["shadow"] is True and r["active"] == active and r["version"] != active
    comparison = r["comparison"]
    assert (comparison["a"], comparison["b"]) == (active, r["version"])
    assert set(comparison["delta"]) >= set(FIGURES)
    listed = json.loads(_run("models", "list", "--json", **on).stdout)  # type: ignore[arg-type]
    roles = {v["version"]: (v.get("active"), v.get("shadow")) for v in listed}
    assert roles[r["version"]] == (False, True)
    promoted = _run("models", "promote", **on)  # type: ignore[arg-type]
    assert promoted.returncode == 0, promoted.stderr
    listed = json.loads(_run("models", "list", "--json", **on).stdout)  # type: ignore[arg-type]
    roles = {v["version"]: (v.get("active"), v.get("shadow")) for v in listed}
    assert roles[r["version"]] == (True, False) and roles[active] == (False, False)
    nothing = _run("models", "promote", **on)  # type: ignore[arg-type]
    assert nothing.returncode == 2 and "no shadow model to promote" in nothing.stderr


MODEL_RULES = """\
mode: all_matched
rules:
  - id: model_says_so
    when: model.score >= 300
    outcome: review
"""
REGISTRY_KEY = "backtest-registry-key-0123456789"


def test_rules_backtest_scores_with_the_active_or_a_named_model(
    sources: tuple[Path, str],
    tmp_path: Path,
    valkey_url: str,
    client: redis.Redis,
    history: SimulationResult,
    trained: TrainedModel,
) -> None:
    folder, url = sources
    version = ModelRegistry(client, REGISTRY_KEY.encode()).save(trained, activate=True)
    rules = tmp_path / "model-rules.yaml"
    rules.write_text(MODEL_RULES)
    backtest = partial(
        _run,
        "rules",
        "backtest",
        str(rules),
        cwd=tmp_path,
        valkey_url=valkey_url,
        env={"FRAUDSTREAM_MODEL_REGISTRY_KEY": REGISTRY_KEY},
    )
    alone = backtest("--history", str(folder))
    assert alone.returncode == 2 and "reads model.score" in alone.stderr
    assert "--model" in alone.stderr and "Traceback" not in alone.stderr
    reports = []
    for model in ("active", version):
        done = backtest("--database", url, "--model", model, "--json")
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    assert reports[0] == reports[1] and reports[0]["model_version"] == version
    # the rule saw the model's own scores of the history's point-in-time features
    frame = features_for_history(history.transactions, history.labels, None, None)
    x = frame.select(trained.bundle.feature_names).cast(pl.Float64).fill_null(np.nan)
    scores = trained.bundle.score(np.ascontiguousarray(x.to_numpy()))
    [rule] = reports[0]["rules"]
    assert rule["hits"] == int((scores >= 300).sum()) > 0
    blocks = int((scores >= round(trained.bundle.thresholds["block"])).sum())
    assert reports[0]["set"]["blocked"] == blocks  # the model's thresholds decide the set
    unknown = backtest("--database", url, "--model", "nope")
    assert unknown.returncode == 2 and "nope" in unknown.stderr
