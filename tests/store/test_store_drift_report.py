"""The weekly precision / recall report on a small store, SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from clikit import run_cli
from fraudstream.drift.report import weekly
from fraudstream.store import migrate
from fraudstream.store.tables import decisions, labels

MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)


def decision(i: int, at: datetime, outcome: str, model: str = "m-1") -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "decided_at": at,
        "score": 900 if outcome != "approve" else 10,
        "outcome": outcome,
        "reasons": [],
        "model_version": model,
        "rules_version": "r-1",
        "latency_ms": 1.0,
        "shadow": [],
    }


def label(i: int, is_fraud: bool, source: str = "chargeback") -> dict[str, Any]:
    return {
        "transaction_id": f"tx-{i}",
        "source": source,
        "is_fraud": is_fraud,
        "reported_at": MONDAY + timedelta(days=3),
    }


def fill(engine: sa.Engine) -> None:
    """Week of 2 March: 4 flagged (tx-0, tx-1 fraud), 6 approved (tx-9 fraud, decided late
    on Sunday); week of 9 March: 1 flagged, genuine. tx-99 is another model's."""
    outcomes = ["block", "review", "step_up", "block"] + ["approve"] * 6
    rows = [decision(i, MONDAY + timedelta(hours=i), o) for i, o in enumerate(outcomes)]
    rows[9] = decision(9, datetime(2026, 3, 8, 23, 30, tzinfo=UTC), "approve")
    rows.append(decision(10, MONDAY + timedelta(days=7), "review"))
    rows += [decision(11 + i, MONDAY + timedelta(days=8), "approve") for i in range(4)]
    rows.append(decision(99, MONDAY, "block", model="m-0"))
    said = [label(0, True), label(0, True, "review"), label(1, True), label(2, False, "review"),
            label(9, True), label(99, True)]  # fmt: skip
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(decisions), rows)
        connection.execute(sa.insert(labels), said)
        if engine.dialect.name == "postgresql":  # weeks are UTC's, not the session's zone
            name = engine.url.database
            connection.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'")
    engine.dispose()


def test_weekly_precision_and_recall_of_one_model(engine: sa.Engine) -> None:
    fill(engine)
    weeks = weekly(engine, "m-1", now=datetime(2026, 3, 20, tzinfo=UTC))
    assert [(w.week, w.decisions, w.flagged, w.frauds, w.caught) for w in weeks] == [
        (date(2026, 3, 2), 10, 4, 3, 2),
        (date(2026, 3, 9), 5, 1, 0, 0),
    ]
    first, second = weeks
    assert (first.precision, first.recall, first.complete) == (0.5, 2 / 3, True)
    assert (second.precision, second.recall, second.complete) == (0.0, None, False)
    assert second.as_dict()["week"] == "2026-03-09"


def test_every_model_or_none(engine: sa.Engine) -> None:
    fill(engine)
    assert weekly(engine, "m-9") == []
    every = weekly(engine, None, now=datetime(2026, 3, 20, tzinfo=UTC))
    assert (every[0].decisions, every[0].flagged, every[0].caught) == (11, 5, 3)


def test_drift_report_command(database_url: str, engine: sa.Engine, tmp_path: Path) -> None:
    fill(engine)
    env = {"FRAUDSTREAM_DATA_DIR": str(tmp_path / "data")}
    args = ("drift", "report", "--database", database_url, "--model", "m-1")
    as_json = run_cli(*args, "--json", env=env)
    assert as_json.returncode == 0, as_json.stderr
    figures = json.loads(as_json.stdout)
    assert figures["model_version"] == "m-1"
    assert [(w["week"], w["precision"]) for w in figures["weeks"]] == [
        ("2026-03-02", 0.5),
        ("2026-03-09", 0.0),
    ]
    table = run_cli(*args, env={**env, "COLUMNS": "160"})
    assert table.returncode == 0, table.stderr
    assert "2026-03-02" in table.stdout and "66.7%" in table.stdout
