"""The SQL sink runs at a lower CPU priority than the workers (`fraudstream.priority`): each
process is started here as a user starts it, in an interpreter of its own, which then
reports the niceness it ran at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from fraudstream.priority import yield_to_scoring

REPORT = """
import json, os, sys
from fraudstream.cli import main
sys.argv = ["fraudstream", *{args!r}]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print(json.dumps({{"nice": os.getpriority(os.PRIO_PROCESS, 0)}}), file=sys.stderr)
"""


def _nice_of(args: list[str], env: dict[str, str], start_nice: int = 0) -> int:
    """The niceness ``fraudstream *args`` ran at, started at ``start_nice``."""
    done = subprocess.run(
        [sys.executable, "-c", REPORT.format(args=args)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **env},
        preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, start_nice)),
    )
    assert done.returncode == 0, done.stderr
    nice: int = json.loads(done.stderr.strip().splitlines()[-1])["nice"]
    return nice


def _settings(valkey_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "data"),
        "FRAUDSTREAM_BLOCK_MS": "50",
        # a channel for `alerts run` (no decision to send: it stops at once in a burst)
        "FRAUDSTREAM_ALERTS_WEBHOOK_URL": "http://127.0.0.1:9/alerts",
        "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": "test-only-signing-secret",
        **extra,
    }


def test_the_sink_runs_nicer_than_the_workers_and_the_alerts(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    env = _settings(valkey_url, tmp_path)
    assert _nice_of(["sink", "--burst"], env) == 10
    assert _nice_of(["worker", "--processes", "1", "--burst", "--quiet"], env) == 0
    assert _nice_of(["alerts", "run", "--burst"], env) == 0  # it sends step-up codes too


def test_consumer_nice_sets_the_level_and_a_nicer_start_is_kept(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    sink = ["sink", "--burst"]
    assert _nice_of(sink, _settings(valkey_url, tmp_path, FRAUDSTREAM_SINK_NICE="0")) == 0
    assert _nice_of(sink, _settings(valkey_url, tmp_path, FRAUDSTREAM_SINK_NICE="4")) == 4
    assert _nice_of(sink, _settings(valkey_url, tmp_path), start_nice=15) == 15


def test_yield_to_scoring_never_raises_the_priority() -> None:
    report = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from fraudstream.priority import yield_to_scoring as y;"
            "print(y(3), y(0), y(2), y(30), os.getpriority(os.PRIO_PROCESS, 0))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert report.stdout.split() == ["3", "3", "3", "19", "19"]
    assert yield_to_scoring(0) == os.getpriority(os.PRIO_PROCESS, 0)  # this process: as is
