"""`fraudstream train` then `evaluate` on a Handbook-format CSV with nothing else: integer
ids, naive times, the extra time columns and zero amounts, as in the published dataset."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import redis

from clikit import run_cli
from fraudstream.simulate import SimulationResult, write_history
from historykit import zero_amounts

_run = partial(run_cli, timeout=300)


def test_train_then_evaluate_a_handbook_csv(
    tmp_path: Path, history: SimulationResult, valkey_url: str, client: redis.Redis
) -> None:
    write_history(history, tmp_path / "sim", formats=("csv",))
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "sim" / "transactions_handbook.csv").rename(work / "X.csv")
    rows = len((work / "X.csv").read_text().splitlines()) - 1
    zero_amounts(work / "X.csv", range(100, rows, 1_000))  # the test week's rows included
    trained = _run(
        "train", "--data", "X.csv", "--train-days", "21", "--json", cwd=work, valkey_url=valkey_url
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr.count("created the model registry key") == 1
    assert (work / ".fraudstream" / "registry.key").exists()
    t = json.loads(trained.stdout)
    assert t["active"] is True and 0.5 < t["auc_roc"] <= 1.0
    # the workers need the neighbourhood the model was trained with: train says which
    assert t["neighbours_until"] == t["protocol"]["train_start"]
    assert trained.stderr.count("taken as UTC") == 1
    evaluated = _run("evaluate", "--data", "X.csv", "--json", cwd=work, valkey_url=valkey_url)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "created" not in evaluated.stderr
    e = json.loads(evaluated.stdout)
    assert e["model_version"] == t["version"]
    for key in ("auc_roc", "average_precision", "card_precision_at_100"):
        assert abs(e[key] - t[key]) < 1e-12, key  # same model, same test week, same figures
    report = work / e["report"]
    assert report.exists()
    assert {p.name for p in report.parent.glob("*.png")} >= {"roc.png", "pr.png"}
    listed = _run("models", "list", "--json", cwd=work, valkey_url=valkey_url)
    assert [v["version"] for v in json.loads(listed.stdout)] == [t["version"]]
    table = _run("models", "list", cwd=work, valkey_url=valkey_url, env={"COLUMNS": "200"})
    holdout_auc = json.loads(listed.stdout)[0]["metrics"]["holdout"]["auc_roc"]
    assert f"{holdout_auc:.3f}" in table.stdout  # the table shows what training stored
    missing = _run("evaluate", "--data", "nope.csv", cwd=work, valkey_url=valkey_url)
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
