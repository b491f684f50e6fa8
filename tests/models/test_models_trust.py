"""What the registry trusts: the key a host holds, the id of a version, its metadata, its bytes.

Each test reproduces one way a model could be swapped or lost without a word: a host without
the key, a signed artifact copied under another id with forged metadata, a tampered artifact.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.features import default_feature_set
from fraudstream.models import (
    ModelError,
    ModelRegistry,
    ModelWatcher,
    SignatureError,
    TrainedModel,
    registry_key,
)
from fraudstream.scoring import build_scorer
from modelkit import second_version, tamper

KEY = b"k" * 32


def _host(tmp_path: Path, name: str, valkey_url: str) -> Settings:
    return Settings(data_dir=str(tmp_path / name), valkey_url=valkey_url, partitions=4)


def test_a_host_without_the_key_refuses_to_score(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    trainer = ModelRegistry(client, registry_key(tmp_path / "a", create=True))
    trainer.save(trained, activate=True)
    with pytest.raises(ModelError, match=r"model_registry_key.*b/registry\.key"):
        build_scorer(_host(tmp_path, "b", valkey_url), client)
    assert not (tmp_path / "b" / "registry.key").exists(), "no key is made up on the spot"


def test_a_host_with_another_key_refuses_to_score(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    ModelRegistry(client, registry_key(tmp_path / "a", create=True)).save(trained, activate=True)
    registry_key(tmp_path / "c", create=True)
    with pytest.raises(SignatureError, match=r"signature check failed.*c/registry\.key"):
        build_scorer(_host(tmp_path, "c", valkey_url), client)


def test_a_host_without_the_key_starts_while_the_registry_is_empty(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path, valkey_url: str
) -> None:
    """A worker started before the first `train` on its host follows the model trained later."""
    scorer = build_scorer(_host(tmp_path, "a", valkey_url), client)
    assert scorer.models is not None and scorer.models.active is None
    version = ModelRegistry(client, registry_key(tmp_path / "a", create=True)).save(
        trained, activate=True
    )
    assert scorer.models.maybe_reload() and scorer.models.active is not None
    assert scorer.models.active.version == version


def test_a_signed_copy_under_another_id_is_refused(
    client: redis.Redis, trained: TrainedModel
) -> None:
    registry = ModelRegistry(client, KEY)
    genuine = registry.save(trained)
    stored: dict[Any, Any] = client.hgetall(registry.version_key(genuine))
    meta = json.loads(stored[b"meta"])
    meta["thresholds"]["review"] = 1.0
    forged = "f" * 12
    client.hset(registry.version_key(forged), mapping={**stored, b"meta": json.dumps(meta)})
    client.zadd(registry.history_key, {forged: time.time()})
    with pytest.raises(ModelError, match="content hash"):
        registry.activate(forged)
    with pytest.raises(ModelError, match="content hash"):
        registry.shadow(forged)
    assert registry.pointers() == (None, None)
    with pytest.raises(ModelError, match="content hash"):
        registry.load(forged)
    with pytest.raises(SignatureError, match="metadata"):
        registry.meta(forged)
    listed = {v.version: v for v in registry.versions()}
    assert listed[genuine].verified and listed[genuine].threshold > 1.0
    assert not listed[forged].verified and listed[forged].threshold == 0.0


def test_edited_metadata_of_a_genuine_version_is_refused(
    client: redis.Redis, trained: TrainedModel
) -> None:
    registry = ModelRegistry(client, KEY)
    version = registry.save(trained)
    meta = registry.meta(version)
    meta["metrics"]["holdout"]["auc_roc"] = 0.999
    client.hset(registry.version_key(version), "meta", json.dumps(meta))
    with pytest.raises(SignatureError, match="metadata"):
        registry.meta(version)
    assert not registry.versions()[0].verified


def test_a_tampered_artifact_is_not_activated(client: redis.Redis, trained: TrainedModel) -> None:
    registry = ModelRegistry(client, KEY)
    good = registry.save(trained, activate=True)
    bad = second_version(registry, trained)
    tamper(client, registry, bad)
    with pytest.raises(SignatureError, match="signature check failed"):
        registry.activate(bad)
    with pytest.raises(SignatureError, match="signature check failed"):
        registry.shadow(bad)
    assert registry.pointers() == (good, None)


def test_rollback_refuses_a_tampered_version(client: redis.Redis, trained: TrainedModel) -> None:
    registry = ModelRegistry(client, KEY)
    first = registry.save(trained, activate=True)
    registry.activate(second_version(registry, trained))
    tamper(client, registry, first)
    with pytest.raises(SignatureError, match="signature check failed"):
        registry.rollback()


def test_a_failed_load_is_loud(
    client: redis.Redis, trained: TrainedModel, caplog: pytest.LogCaptureFixture
) -> None:
    """Tampered after activation: the running watcher keeps its model and says so at ERROR,
    counts the failure and reports it; a new one refuses to start."""
    registry = ModelRegistry(client, KEY)
    good = registry.save(trained, activate=True)
    bad = second_version(registry, trained)
    watcher = ModelWatcher(registry, default_feature_set())
    watcher.start()
    tamper(client, registry, bad)
    client.set(registry.active_key, bad)  # written behind the registry's back
    with caplog.at_level(logging.ERROR, logger="fraudstream.models"):
        assert watcher.maybe_reload() is False
        assert watcher.maybe_reload() is False  # not retried on every batch
    assert watcher.active is not None and watcher.active.version == good
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert bad in caplog.text and "signature check failed" in caplog.text
    health = watcher.health()
    assert (health.state, health.version, health.wanted) == ("failed", good, bad)
    assert health.load_failures == 1 and "signature check failed" in str(health.error)
    with pytest.raises(SignatureError, match="refusing to start"):
        ModelWatcher(registry, default_feature_set()).start()
    registry.activate(good)
    watcher.maybe_reload()
    assert watcher.health().state == "active" and watcher.health().error is None
