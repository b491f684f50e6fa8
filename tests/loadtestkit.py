"""Load-test runs to store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner, Result

from fraudstream.loadtest.record import Latency, RunRecord, Second

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_run(run_id: str, pattern: str = "wave", *, hours: int = 0, p99: float = 40.0) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        pattern=pattern,
        target_tps=200.0,
        duration_s=4.0,
        processes=2,
        status="completed",
        started_at=T0 + timedelta(hours=hours),
        ended_at=T0 + timedelta(hours=hours, seconds=5),
        elapsed_s=4.0,
        sent=800,
        decided=799,
        dead_letters=1,
        frauds_sent=8,
        frauds_caught=6,
        achieved_tps=199.75,
        model_version="m-1",
        outcomes={"approve": 790, "block": 4, "review": 5},
        latencies=[
            Latency("end_to_end", 799, 16.5, 14.5, 31.5, p99, 7.0, 45.0),
            Latency("queue", 799, 6.5, 6.0, 16.0, 21.5, 0.5, 23.0),
        ],
        seconds=[Second(0, 200.0, 200, 198, 15.0, 30.0), Second(4, 0.0, 0, 2, None, None)],
    )


def invoke(*args: str) -> Result:
    """Run a command in this process (a fraction of a subprocess's start-up): for the
    commands that only read the store or refuse their input. Wide, so an error box does not
    wrap its one line."""
    from fraudstream.cli import app

    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
