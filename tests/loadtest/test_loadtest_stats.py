"""A run's figures from its decisions: per second, per stage, frauds caught, lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from fraudstream.loadtest.report import run_tables
from fraudstream.loadtest.stats import RunStats
from fraudstream.schema import Decision, Outcome
from fraudstream.simulate.patterns import RateCurve

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _decision(i: int, at_s: float, latency: float, outcome: Outcome = "approve") -> Decision:
    return Decision(
        transaction_id=f"r-{i}",
        score=0,
        outcome=outcome,
        reasons=[],
        model_version="m-1",
        rules_version="r-1",
        latency_ms=latency,
        decided_at=START + timedelta(seconds=at_s),
        stages={"queue": latency / 2, "features": 1.0, "model": 0.5, "rules": 0.25},
    )


def _stats() -> RunStats:
    return RunStats(RateCurve("constant", 10, 3), 3.0, START.timestamp())


def test_decisions_fall_in_the_second_they_were_decided() -> None:
    stats = _stats()
    stats.sent_until(10, 0.9)
    stats.sent_until(25, 1.9)
    for i, (at, ms) in enumerate([(0.2, 10.0), (0.7, 30.0), (1.1, 5.0), (2.5, 7.0)]):
        stats.add(_decision(i, at, ms), is_fraud=False)
    seconds = stats.seconds()
    assert [(s.second, s.sent, s.decided) for s in seconds] == [(0, 10, 2), (1, 15, 1), (2, 0, 1)]
    assert [s.target_tps for s in seconds] == pytest.approx([10, 10, 10])
    assert seconds[0].p50_ms == pytest.approx(20.0)


def test_record_counts_outcomes_frauds_and_every_stage() -> None:
    stats = _stats()
    stats.sent_until(5, 0.5)
    stats.add(_decision(0, 0.1, 4.0, "block"), is_fraud=True)
    stats.add(_decision(1, 0.2, 8.0, "review"), is_fraud=True)
    stats.add(_decision(2, 0.3, 2.0, "approve"), is_fraud=True)
    stats.add(_decision(3, 0.4, 6.0, "review"), is_fraud=False)
    stats.add_dead_letter()
    assert stats.snapshot(0.5).lag == 0  # 5 sent = 4 decided + 1 dead letter
    record = stats.record("r", 2, "completed", frauds_sent=3, ended=START.timestamp() + 1)
    assert (record.sent, record.decided, record.dead_letters) == (5, 4, 1)
    assert record.outcomes == {"approve": 1, "block": 1, "review": 2}
    assert (record.frauds_sent, record.frauds_caught) == (3, 2)
    e2e = record.latency()
    assert (e2e.samples, e2e.min_ms, e2e.max_ms, e2e.avg_ms) == (4, 2.0, 8.0, 5.0)
    assert record.latency("queue").max_ms == 4.0
    assert [lat.stage for lat in record.latencies] == [
        "end_to_end", "queue", "features", "model", "rules"
    ]  # fmt: skip
    assert record.elapsed_s == pytest.approx(0.4)
    assert record.achieved_tps == pytest.approx(10.0)


def test_a_fraud_stepped_up_is_caught_and_the_run_table_says_so() -> None:
    stats = _stats()
    stats.sent_until(2, 0.5)
    stats.add(_decision(0, 0.1, 4.0, "step_up"), is_fraud=True)
    stats.add(_decision(1, 0.2, 4.0, "approve"), is_fraud=True)
    record = stats.record("r", 1, "completed", frauds_sent=2, ended=START.timestamp() + 1)
    assert record.frauds_caught == 1
    out = Console(width=200, record=True)
    for table in run_tables(record):
        out.print(table)
    [row] = [line for line in out.export_text().splitlines() if "frauds caught" in line]
    assert "frauds caught (step-up, review or block) " in row and row.endswith(" 1 of 2 (50 %) │")
