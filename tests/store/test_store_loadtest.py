"""`fraudstream loadtest` and `monitor` as a user runs them, on both dialects: what the run
stores is what the decisions stream holds."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from clikit import run_cli
from fraudstream.schema import decode_decision
from fraudstream.store import runs
from fraudstream.stream.keys import PAYLOAD
from loadtestkit import invoke


def loadtest_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FRAUDSTREAM_DATABASE_URL": database_url,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "data"),
        "FRAUDSTREAM_BLOCK_MS": "50",
        "FRAUDSTREAM_PARTITIONS": "4",
    }


def decisions_of(client: redis.Redis, run_id: str) -> Counter[str]:
    """Outcomes of the run's decisions in ``tx.decisions``."""
    entries: Any = client.xrange("tx.decisions")
    decided = (decode_decision(fields[PAYLOAD]) for _, fields in entries)
    return Counter(d.outcome for d in decided if d.transaction_id.startswith(run_id + "-"))


def test_a_short_run_stores_what_the_decisions_stream_holds(
    client: redis.Redis, valkey_url: str, database_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    env = loadtest_env(database_url, tmp_path)
    done = run_cli(
        "loadtest", "--tps", "100", "--duration", "3", "--pattern", "wave", "--run-id", "lt1",
        "--processes", "1", "--json", env=env, valkey_url=valkey_url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    outcomes = decisions_of(client, "lt1")
    assert figures["status"] == "completed"
    assert figures["outcomes"] == dict(outcomes) and figures["decided"] == outcomes.total()
    assert figures["sent"] == figures["decided"] + figures["dead_letters"]
    assert 295 <= figures["sent"] <= 300  # the wave's integral over its two periods
    assert sum(s["sent"] for s in figures["seconds"]) == figures["sent"]
    assert sum(s["decided"] for s in figures["seconds"]) == figures["decided"]
    assert {lat["stage"] for lat in figures["latencies"]} == {
        "end_to_end", "queue", "features", "model", "rules"
    }  # fmt: skip
    assert "loadtest lt1 " in done.stderr and " lag " in done.stderr  # plain progress lines
    stored = runs.load(engine, "lt1")
    assert stored is not None and stored.as_dict() == figures

    shown = invoke("monitor", "--run", "lt1", "--database", database_url)
    assert shown.exit_code == 0, shown.output
    assert f"{figures['sent']:,} / {figures['decided']:,} / {figures['dead_letters']:,}" in (
        shown.stdout
    )
    assert "end to end" in shown.stdout and "features" in shown.stdout

    again = invoke("loadtest", "--run-id", "lt1", "--duration", "1", "--database", database_url)
    assert again.exit_code == 2
    assert "Invalid value for --run-id: a run 'lt1' is already stored" in again.stderr
