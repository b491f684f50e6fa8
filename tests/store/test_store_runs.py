"""Load-test runs in the store (`fraudstream.store.runs`), on both dialects."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from fraudstream.errors import StoreError
from fraudstream.store import migrate, runs
from loadtestkit import T0, make_run


def test_a_run_comes_back_as_it_was_stored(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    run = make_run("r1")
    assert not runs.exists(engine, "r1")
    runs.save(engine, run)
    assert runs.exists(engine, "r1")
    assert runs.load(engine, "r1") == run
    assert runs.load(engine, "nope") is None


def test_a_second_run_with_the_same_id_is_refused_whole(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    runs.save(engine, make_run("r1"))
    with pytest.raises(StoreError, match="r1"):
        runs.save(engine, replace(make_run("r1"), sent=1))
    assert runs.load(engine, "r1") == make_run("r1")


def test_summaries_newest_first_and_aggregates_per_pattern(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    runs.save(engine, make_run("old", "wave", p99=40.0))
    runs.save(engine, make_run("new", "spike", hours=1, p99=80.0))
    runs.save(engine, make_run("mid", "wave", hours=0, p99=60.0))
    listed = runs.summaries(engine)
    assert listed[0]["run_id"] == "new" and {r["run_id"] for r in listed} == {"old", "new", "mid"}
    assert listed[0]["p99_ms"] == 80.0 and listed[0]["started_at"] == T0 + timedelta(hours=1)
    assert runs.latest(engine) == "new"
    by = {row["pattern"]: row for row in runs.aggregates(engine)}
    assert list(by) == ["spike", "wave", "all"]
    assert by["wave"]["runs"] == 2 and by["wave"]["sent"] == 1600
    assert by["wave"]["p99_ms_avg"] == pytest.approx(50.0)
    assert by["all"]["p99_ms_max"] == 80.0 and by["all"]["frauds_caught"] == 18


def test_a_store_without_runs_has_none(engine: sa.Engine) -> None:
    """Before migration 0004 (or any): no runs, no error."""
    assert runs.summaries(engine) == [] and runs.aggregates(engine) == []
    assert runs.latest(engine) is None and not runs.exists(engine, "r1")
