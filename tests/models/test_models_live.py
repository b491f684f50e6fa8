"""Activation while traffic flows: a running worker switches model between batches."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from fraudstream.features import default_feature_set
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
        # In process: the CLI's start-up (seconds on a loaded machine) could outlast the
        # traffic; `models activate` itself is run in test_models_trust_cli.
        registry.activate(version, default_feature_set())

    activating_at, activated_at, decisions = live_change(env, activate)
    ids = [d["transaction_id"] for d in decisions]
    assert len(ids) == len(set(ids)), "nothing scored twice across the switch"

    def at(d: dict[str, Any]) -> float:
        return datetime.fromisoformat(d["decided_at"]).timestamp()

    before = [d for d in decisions if at(d) < activating_at]
    after = [d for d in decisions if at(d) > activated_at + 2]
    assert before and {d["model_version"] for d in before} == {"none"}
    assert after and {d["model_version"] for d in after} == {version}
    [published] = client.hvals("tx.drift.windows")  # the worker counts the model's drift
    window = json.loads(published)
    assert window["model_version"] == version and window["rows"] > 0
