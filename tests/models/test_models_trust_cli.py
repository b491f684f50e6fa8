"""The registry's trust as the commands show it: who refuses to start, what is printed, and
what ``/healthz`` says about the model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis

from apikit import get, post, start_server, stop_server
from clikit import run_cli
from fraudstream.models import ModelRegistry, TrainedModel, registry_key
from modelkit import second_version, tamper

KEY = "a-shared-registry-key-of-enough-bytes"
API_KEY = "test-key-123"


def _good_and_tampered(client: redis.Redis, trained: TrainedModel) -> tuple[str, str]:
    """An active genuine version under KEY and a second one, tampered with after storing."""
    registry = ModelRegistry(client, KEY.encode())
    good = registry.save(trained, activate=True)
    bad = second_version(registry, trained)
    tamper(client, registry, bad)
    return good, bad


def _run(tmp_path: Path, valkey_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command on a host holding the key."""
    env = {"FRAUDSTREAM_MODEL_REGISTRY_KEY": KEY, "FRAUDSTREAM_DATA_DIR": str(tmp_path)}
    return run_cli(*args, env=env, valkey_url=valkey_url, timeout=20)


@pytest.mark.parametrize("command", [["worker", "--burst"], ["serve", "--port", "0"]])
def test_a_host_without_the_key_refuses_to_start(
    command: list[str], client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    ModelRegistry(client, registry_key(tmp_path / "a", create=True)).save(trained, activate=True)
    env = {"FRAUDSTREAM_DATA_DIR": str(tmp_path / "b")}
    try:
        done = run_cli(*command, env=env, valkey_url=valkey_url, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command[0]} started without the key")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "model_registry_key" in lines[0] and str(tmp_path / "b" / "registry.key") in lines[0]


def test_a_worker_refuses_a_tampered_active_model(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    _, bad = _good_and_tampered(client, trained)
    client.set(ModelRegistry(client, KEY.encode()).active_key, bad)
    done = _run(tmp_path, valkey_url, "worker", "--burst")
    assert done.returncode == 2 and "refusing to start" in done.stderr, done.stderr
    assert bad in done.stderr and "signature check failed" in done.stderr


def test_models_activate_checks_the_version_first(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    good, bad = _good_and_tampered(client, trained)
    registry = ModelRegistry(client, KEY.encode())
    done = _run(tmp_path, valkey_url, "models", "activate", bad)
    assert done.returncode == 2 and "signature check failed" in done.stderr, done.stderr
    assert registry.active_version() == good
    client.set(registry.active_key, bad)
    done = _run(tmp_path, valkey_url, "models", "activate", good)
    assert done.returncode == 0 and registry.active_version() == good, done.stderr


def test_a_worker_counts_and_prints_failed_loads(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    good, bad = _good_and_tampered(client, trained)
    client.set(ModelRegistry(client, KEY.encode()).shadow_key, bad)
    done = _run(tmp_path, valkey_url, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert f"model {good}" in done.stderr
    assert "ERROR" in done.stderr and f"model {bad}" in done.stderr
    assert "1 failed model load" in done.stderr


def test_healthz_reports_the_model(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    good, bad = _good_and_tampered(client, trained)
    proc, base = start_server(valkey_url, tmp_path, API_KEY, model_registry_key=KEY)
    try:
        status, health = get(base, "/healthz", key=None)
        assert status == 200 and health["status"] == "ok"
        assert health["model"]["state"] == "active" and health["model"]["version"] == good
        client.set(ModelRegistry(client, KEY.encode()).active_key, bad)
        tx = {
            "transaction_id": "h1",
            "timestamp": "2026-01-01T00:00:00Z",
            "customer_id": "c1",
            "terminal_id": "t1",
            "merchant_id": "m1",
            "amount": 10.0,
            "currency": "EUR",
            "channel": "ecommerce",
        }
        status, decision = post(base, "/v1/score", tx, API_KEY)
        assert status == 200 and decision["model_version"] == good
        status, health = get(base, "/healthz", key=None)
        assert status == 200 and health["status"] == "degraded"
        model = health["model"]
        assert (model["state"], model["version"], model["wanted"]) == ("failed", good, bad)
        assert "signature check failed" in model["error"] and model["load_failures"] == 1
    finally:
        stop_server(proc)
