"""`fraudstream loadtest` / `monitor` as a user runs them: Ctrl-C, plots, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import redis

from fraudstream.store import migrate, runs
from fraudstream.store.engine import create_engine
from loadtestkit import invoke, make_run


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "FRAUDSTREAM_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "data"),
        "FRAUDSTREAM_BLOCK_MS": "50",
        "FRAUDSTREAM_PARTITIONS": "4",
    }


def _store(tmp_path: Path, *run_ids: str) -> str:
    """A SQLite store holding ``run_ids``; its URL."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    for i, run_id in enumerate(run_ids):
        runs.save(engine, make_run(run_id, hours=i))
    engine.dispose()
    return url


def test_ctrl_c_stops_the_run_and_still_stores_it(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, **_env(tmp_path), "FRAUDSTREAM_VALKEY_URL": valkey_url}
    command = [sys.executable, "-m", "fraudstream", "loadtest", "--tps", "100", "--duration",
               "60", "--run-id", "cc", "--processes", "1", "--json"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while client.xlen("tx.decisions") < 100:  # the run is under way
            assert time.monotonic() < deadline and proc.poll() is None, "no decisions"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    figures = json.loads(out)
    assert figures["status"] == "interrupted"
    assert 100 <= figures["decided"] == client.xlen("tx.decisions") < 6000
    assert figures["sent"] == figures["decided"] + figures["dead_letters"]
    listed = invoke("monitor", "--json", "--database", f"sqlite:///{tmp_path / 'store.db'}")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == ["cc"]


def test_monitor_lists_aggregates_and_plots_the_stored_runs(tmp_path: Path) -> None:
    database = _store(tmp_path, "first", "second")
    listed = invoke("monitor", "--runs", "--database", database)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.index("second") < listed.stdout.index("first")  # newest first
    stats = json.loads(invoke("monitor", "--stats", "--json", "--database", database).stdout)
    assert [(row["pattern"], row["runs"]) for row in stats] == [("wave", 2), ("all", 2)]
    png = tmp_path / "plots" / "run.png"
    plotted = invoke("monitor", "--latest", "--plot", str(png), "--database", database)
    assert plotted.exit_code == 0, plotted.output
    assert "run second" in plotted.stdout and "end to end" in plotted.stdout
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert matplotlib.image.imread(png).shape[:2] == (660, 990)


@pytest.mark.parametrize(
    ("args", "flag", "problem"),
    [
        (["loadtest", "--pattern", "sawtooth"], "--pattern", "'sawtooth' is not one of"),
        (["loadtest", "--tps", "0"], "--tps", "must be > 0, got 0"),
        (["loadtest", "--run-id", "two words"], "--run-id", "must be a word"),
        (["monitor", "--run", "nope"], "--run", "no run 'nope' is stored"),
        (["monitor", "--runs", "--stats"], "--stats", "choose one of"),
        (["monitor", "--runs", "--plot", "x.png"], "--plot", "plots one run"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(
    tmp_path: Path, args: list[str], flag: str, problem: str
) -> None:
    done = invoke(*args, "--database", _store(tmp_path, "r1"))
    assert done.exit_code == 2 and done.exception is not None
    assert isinstance(done.exception, SystemExit)  # not a traceback
    assert f"Invalid value for {flag}: {problem}" in done.stderr
