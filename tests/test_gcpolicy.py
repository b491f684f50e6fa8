"""The long-running processes freeze what start-up loaded out of the garbage collector
(`fraudstream.gcpolicy`): each is started here as a user starts it, in a process of its
own, which then reports what its collector holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

REPORT = """
import gc, json, sys
{body}
print(json.dumps({{"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}}),
      file=sys.stderr)
"""

RUN_CLI = """
from fraudstream.cli import main
sys.argv = ["fraudstream", *{args!r}]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
"""


def _report(body: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Run ``body`` in a fresh interpreter; what its collector holds afterwards."""
    done = subprocess.run(
        [sys.executable, "-c", REPORT.format(body=body)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


def _settings(valkey_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path / "data"),
        "FRAUDSTREAM_BLOCK_MS": "50",
    }


def test_freeze_startup_freezes_what_is_alive_and_still_collects_what_comes_after() -> None:
    report = _report(
        "from fraudstream.gcpolicy import freeze_startup\n"
        "import fraudstream.scoring\n"
        "freeze_startup(12345)\n"
        "cycle = []; cycle.append(cycle); del cycle\n"
        "assert gc.collect() >= 1, 'a cycle made after the freeze was not collected'\n"
    )
    assert isinstance(report["frozen"], int) and report["frozen"] > 10_000  # the imports
    assert isinstance(report["threshold"], list) and report["threshold"][0] == 12345


def test_a_worker_process_freezes_its_start_up(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    args = ["worker", "--processes", "1", "--burst", "--quiet"]
    report = _report(RUN_CLI.format(args=args), _settings(valkey_url, tmp_path))
    assert isinstance(report["frozen"], int) and report["frozen"] > 10_000


def test_a_sink_process_freezes_its_start_up_and_collects_young_objects_less_often(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    from fraudstream.store.sink import YOUNG_GC_THRESHOLD

    args = ["sink", "--burst"]
    report = _report(RUN_CLI.format(args=args), _settings(valkey_url, tmp_path))
    assert isinstance(report["frozen"], int) and report["frozen"] > 10_000
    assert isinstance(report["threshold"], list) and report["threshold"][0] == YOUNG_GC_THRESHOLD


def test_a_server_process_freezes_its_app(
    client: redis.Redis, valkey_url: str, tmp_path: Path
) -> None:
    body = "from fraudstream.api.serving import app_from_environment\napp_from_environment()\n"
    report = _report(body, _settings(valkey_url, tmp_path))
    assert isinstance(report["frozen"], int) and report["frozen"] > 10_000
