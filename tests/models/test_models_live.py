"""Activation while traffic flows: a running worker switches model between batches."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from fraudstream.models import ModelRegistry, TrainedModel

KEY = "a-shared-registry-key-of-enough-bytes"


def test_activation_during_generate_switches_the_running_worker(
    tmp_path: Path,
    valkey_url: str,
    client: redis.Redis,
    trained: TrainedModel,
    live_change: Callable[..., tuple[float, float, list[Any]]],
) -> None:
    registry = ModelRegistry(client, KEY.encode())
    version = registry.save(trained)
    env = {
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_MODEL_REGISTRY_KEY": KEY,
        "FRAUDSTREAM_DATA_DIR": str(tmp_path),
    }

    def activate() -> None:
        done = subprocess.run(
            [sys.executable, "-m", "fraudstream", "models", "activate", version],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr

    activating_at, activated_at, decisions = live_change(env, activate)
    ids = [d["transaction_id"] for d in decisions]
    assert len(ids) == len(set(ids)), "nothing scored twice across the switch"

    def at(d: dict[str, Any]) -> float:
        return datetime.fromisoformat(d["decided_at"]).timestamp()

    before = [d for d in decisions if at(d) < activating_at]
    after = [d for d in decisions if at(d) > activated_at + 2]
    assert before and {d["model_version"] for d in before} == {"none"}
    assert after and {d["model_version"] for d in after} == {version}
