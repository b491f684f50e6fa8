"""Model versions over HTTP: list them with their roles, promote one, and retrain on the store
in a separate process whose job state lives in Valkey. The admin scope only.

One server for the module on a data dir whose SQLite store holds the small simulated history
and its labels (what `fraudstream sink` would have written); the registry key is a setting
shared by the server, its retrain processes and this test's registry.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from apikit import KEY, call, get, post, sample_tx, start_server, stop_server
from clikit import run_cli
from featkit import transactions
from fraudstream.api.keys import KeyStore
from fraudstream.models import ModelRegistry, TrainedModel, TrainOptions, train
from fraudstream.schema import Label
from fraudstream.simulate import SimulationResult
from fraudstream.store.write import store_labels, store_transactions
from storekit import migrated_store

pytestmark = pytest.mark.integration

REGISTRY_KEY = "models-api-registry-key-0123456789"
JOB_TIMEOUT_S = 300
"""A deadline for the retrain process to finish on a loaded host, not a speed check."""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, history: SimulationResult) -> Path:
    folder = tmp_path_factory.mktemp("models-api")
    labels = [msgspec.convert(row, Label) for row in history.labels.iter_rows(named=True)]
    with migrated_store(folder) as engine, engine.begin() as connection:
        store_transactions(connection, transactions(history.transactions))
        store_labels(connection, labels)
    return folder


@pytest.fixture(scope="module")
def server(data_dir: Path, valkey_url: str) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()  # what earlier modules left (models)
    proc, base = start_server(valkey_url, data_dir, KEY, model_registry_key=REGISTRY_KEY)
    try:
        yield base
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def other(history: SimulationResult) -> TrainedModel:
    """A second version, on a shorter window than the session's `trained`."""
    options = TrainOptions(train_days=14, anomaly_trees=20, max_rounds=100)
    return train(history.transactions, history.labels, options)


@pytest.fixture
def registry(client: redis.Redis) -> ModelRegistry:
    return ModelRegistry(client, REGISTRY_KEY.encode())


def _roles(body: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    return {v["version"]: (v["active"], v["shadow"]) for v in body["versions"]}


def _finished(server: str, location: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        status, job = get(server, location)
        assert status == 200, job
        if job["state"] in ("succeeded", "failed"):
            return dict(job)
        assert time.monotonic() < deadline, f"retrain job still {job['state']}"
        time.sleep(0.5)


def test_the_models_routes_need_the_admin_scope(server: str, client: redis.Redis) -> None:
    everything_else = KeyStore(client).create(
        "ops", ["score", "ingest", "labels", "read", "review"]
    )
    refusals = [
        call(server, "GET", "/v1/models", key=everything_else),
        call(server, "POST", "/v1/models/promote", key=everything_else),
        call(server, "POST", "/v1/models/abc/promote", key=everything_else),
        call(server, "POST", "/v1/models/retrain", {}, key=everything_else),
        call(server, "GET", "/v1/models/jobs/abc", key=everything_else),
    ]
    for reply in refusals:
        assert reply.status == 403, reply.body
        assert "lacks the 'admin' scope" in reply.body["error"]["message"]
    admin = KeyStore(client).create("boss", ["admin"])
    empty: dict[str, Any] = {"active": None, "shadow": None, "versions": []}
    assert get(server, "/v1/models", key=admin) == (200, empty)
    paths = get(server, "/openapi.json")[1]["paths"]
    for path in ("/v1/models", "/v1/models/promote", "/v1/models/{version}/promote"):
        assert path in paths
    assert set(paths["/v1/models/retrain"]["post"]["responses"]) >= {"202", "409", "422"}
    assert "/v1/models/jobs/{job_id}" in paths


def test_list_and_promote_swap_the_roles_as_the_cli_does(
    server: str,
    valkey_url: str,
    registry: ModelRegistry,
    trained: TrainedModel,
    other: TrainedModel,
    tmp_path: Path,
) -> None:
    active = registry.save(trained, activate=True)
    shadow = registry.save(other)
    registry.shadow(shadow)
    status, listed = get(server, "/v1/models")
    assert status == 200 and _roles(listed) == {active: (True, False), shadow: (False, True)}
    env = {"FRAUDSTREAM_MODEL_REGISTRY_KEY": REGISTRY_KEY}
    cli = run_cli("models", "list", "--json", env=env, valkey_url=valkey_url, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert listed["versions"] == json.loads(cli.stdout)  # the same listing, one owner
    holdout = listed["versions"][0]["metrics"]["holdout"]
    assert 0.5 < holdout["auc_roc"] <= 1.0

    status, promoted = post(server, "/v1/models/promote", None)
    assert status == 200, promoted
    assert (promoted["active"], promoted["shadow"]) == (shadow, None)
    assert _roles(promoted) == {active: (False, False), shadow: (True, False)}
    assert registry.pointers() == (shadow, None)
    status, refused = post(server, "/v1/models/promote", None)
    assert status == 409 and "no shadow model to promote" in refused["error"]["message"]

    status, back = post(server, f"/v1/models/{active}/promote", None)
    assert status == 200 and _roles(back) == {active: (True, False), shadow: (False, False)}
    status, unknown = post(server, "/v1/models/nope/promote", None)
    assert status == 404 and unknown["error"]["field"] == "version"
    registry.client.hset(registry.version_key(shadow), "sig", "00" * 32)  # altered
    status, untrusted = post(server, f"/v1/models/{shadow}/promote", None)
    assert status == 409 and "signature" in untrusted["error"]["message"], untrusted
    assert registry.pointers() == (active, None)


def test_retrain_runs_in_its_own_process_and_shadows_the_new_version(
    server: str, registry: ModelRegistry, trained: TrainedModel
) -> None:
    active = registry.save(trained, activate=True)
    reply = call(server, "POST", "/v1/models/retrain", {"train_days": 21})
    assert reply.status == 202, reply.body
    job = reply.body
    location = reply.headers["Location"]
    assert location == f"/v1/models/jobs/{job['job_id']}"
    assert job["state"] == "queued" and job["options"]["train_days"] == 21
    again = call(server, "POST", "/v1/models/retrain", {})
    assert again.status == 409 and job["job_id"] in again.body["error"]["message"]
    status, scored = post(server, "/v1/score", sample_tx(1))  # the server scores meanwhile
    assert status == 200 and scored["model_version"] == active, scored

    done = _finished(server, location)
    assert done["state"] == "succeeded", done
    version = done["version"]
    assert version != active and done["active"] == active
    assert (done["comparison"]["a"], done["comparison"]["b"]) == (active, version)
    assert "auc_roc" in done["comparison"]["delta"]
    assert done["started_at"] <= done["finished_at"]
    assert _roles(get(server, "/v1/models")[1])[version] == (False, True)
    assert registry.pointers() == (active, version)

    status, promoted = post(server, "/v1/models/promote", None)  # the loop's last step
    assert status == 200 and (promoted["active"], promoted["shadow"]) == (version, None)


def test_a_failing_retrain_is_failed_with_its_one_line_error(
    server: str, registry: ModelRegistry, trained: TrainedModel
) -> None:
    active = registry.save(trained, activate=True)
    reply = call(server, "POST", "/v1/models/retrain", {"train_end": "2001-01-31"})
    assert reply.status == 202, reply.body
    done = _finished(server, reply.headers["Location"])
    assert done["state"] == "failed" and "version" not in done
    error = done["error"]
    assert error.startswith("protocol: train 2000-12-07..2001-01-31") and "\n" not in error
    assert "is not inside the data" in error and "Traceback" not in error
    assert registry.pointers() == (active, None)
    # the lock went with the job: the next retrain may start
    status, refused = post(server, "/v1/models/retrain", {"train_days": 0})
    assert status == 422 and refused["error"]["field"] == "train_days"


def test_retrain_options_are_validated_and_unknown_jobs_are_404(server: str) -> None:
    for body, field in (
        ({"train_end": "31/01/2018"}, "train_end"),
        ({"train_days": "many"}, "train_days"),
        ({"delay_days": -1}, "delay_days"),
        ({"test_days": 0}, "test_days"),
        ({"database": "sqlite:////etc/passwd"}, "database"),
    ):
        status, refused = post(server, "/v1/models/retrain", body)
        assert status == 422 and refused["error"]["field"] == field, (body, refused)
    status, unknown = get(server, "/v1/models/jobs/0123456789abcdef0123456789abcdef")
    assert status == 404 and unknown["error"]["field"] == "job_id"


def test_a_retrain_process_killed_mid_run_is_failed_and_frees_the_slot(
    server: str, registry: ModelRegistry, trained: TrainedModel
) -> None:
    registry.save(trained, activate=True)
    reply = call(server, "POST", "/v1/models/retrain", {"train_days": 21})
    assert reply.status == 202, reply.body
    location = reply.headers["Location"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := get(server, location)[1])["state"] == "queued":
        assert time.monotonic() < deadline, "the retrain process never started"
        time.sleep(0.2)
    assert job["state"] == "running" and job["pid"] > 0, job
    os.kill(job["pid"], signal.SIGKILL)
    done = _finished(server, location)
    assert done["state"] == "failed" and "killed by signal 9" in done["error"], done
    status, refused = post(server, "/v1/models/retrain", {"test_days": 0})
    assert status == 422 and refused["error"]["field"] == "test_days"  # not 409: slot free
