"""Activation while traffic flows: a running worker switches model between batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from fraudstream.models import ModelRegistry, TrainedModel

KEY = "a-shared-registry-key-of-enough-bytes"


def test_activation_during_generate_switches_the_running_worker(
    tmp_path: Path, valkey_url: str, client: redis.Redis, trained: TrainedModel
) -> None:
    registry = ModelRegistry(client, KEY.encode())
    version = registry.save(trained)
    env = {
        **os.environ,
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_BLOCK_MS": "100",
        "FRAUDSTREAM_MODEL_REGISTRY_KEY": KEY,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path),
    }
    worker = subprocess.Popen([sys.executable, "-m", "fraudstream", "worker", "--quiet"], env=env)
    generate = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudstream",
            "generate",
            "--tps",
            "300",
            "--duration",
            "8",
            "--run-id",
            "live",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while client.xlen("tx.decisions") < 200:
            assert time.monotonic() < deadline, "no decisions"
            time.sleep(0.1)
        activating_at = time.time()
        activated = subprocess.run(
            [sys.executable, "-m", "fraudstream", "models", "activate", version],
            env=env,
            capture_output=True,
            text=True,
        )
        assert activated.returncode == 0, activated.stderr
        activated_at = time.time()
        generate.communicate(timeout=60)
        time.sleep(1.0)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
        generate.kill()
    entries: Any = client.xrange("tx.decisions")
    decisions = [json.loads(f[b"d"]) for _, f in entries]
    ids = [d["transaction_id"] for d in decisions]
    assert len(ids) == len(set(ids)), "nothing scored twice across the switch"

    def at(d: dict[str, Any]) -> float:
        return datetime.fromisoformat(d["decided_at"]).timestamp()

    before = [d for d in decisions if at(d) < activating_at]
    after = [d for d in decisions if at(d) > activated_at + 2]
    assert before and {d["model_version"] for d in before} == {"none"}
    assert after and {d["model_version"] for d in after} == {version}
