from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import redis

from fraudstream.features import default_feature_set
from fraudstream.models import (
    ModelError,
    ModelRegistry,
    ModelWatcher,
    SignatureError,
    TrainedModel,
    registry_key,
)

KEY = b"k" * 32


def _sample(trained: TrainedModel) -> np.ndarray:
    assert trained.dataset is not None
    return trained.dataset.matrix()[-500:]


def test_save_load_scores_identically(client: redis.Redis, trained: TrainedModel) -> None:
    reg = ModelRegistry(client, KEY)
    version = reg.save(trained)
    assert reg.save(trained) == version  # content-addressed
    loaded = reg.load(version, default_feature_set())
    X = _sample(trained)
    np.testing.assert_array_equal(loaded.score(X), trained.bundle.score(X))
    assert loaded.explain(X[:3]) == trained.bundle.explain(X[:3])
    assert loaded.meta["data_hash"] == trained.bundle.meta["data_hash"]


def test_tampered_or_foreign_artifacts_are_refused(
    client: redis.Redis, trained: TrainedModel
) -> None:
    reg = ModelRegistry(client, KEY)
    version = reg.save(trained)
    with pytest.raises(SignatureError, match="signature check failed"):
        ModelRegistry(client, b"x" * 32).load(version)
    data = client.hget(reg.version_key(version), "artifact")
    assert isinstance(data, bytes)
    client.hset(reg.version_key(version), "artifact", data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(SignatureError):
        reg.load(version)
    with pytest.raises(ModelError, match="unknown model version"):
        reg.load("nope")


def test_activate_rollback_shadow_delete(client: redis.Redis, trained: TrainedModel) -> None:
    reg = ModelRegistry(client, KEY)
    a = reg.save(trained)
    trained.bundle.meta["note"] = "b"
    b = reg.save(trained)
    del trained.bundle.meta["note"]
    assert a != b
    reg.activate(a)
    reg.activate(b)
    assert reg.pointers() == (b, None)
    assert reg.rollback() == a and reg.active_version() == a
    with pytest.raises(ModelError, match="no earlier"):
        reg.rollback()
    reg.shadow(b)
    assert reg.pointers() == (a, b)
    with pytest.raises(ModelError, match="shadow version"):
        reg.delete(b)
    reg.shadow(None)
    reg.delete(b)
    assert [v.version for v in reg.versions()] == [a]
    assert reg.versions()[0].active


def test_watcher_follows_the_pointers(client: redis.Redis, trained: TrainedModel) -> None:
    reg = ModelRegistry(client, KEY)
    watcher = ModelWatcher(reg, default_feature_set())
    assert watcher.maybe_reload() is False and watcher.active is None
    v = reg.save(trained, activate=True)
    assert watcher.maybe_reload() is True and watcher.active is not None
    assert watcher.active.version == v
    assert watcher.maybe_reload() is False
    reg.shadow(v)
    assert watcher.maybe_reload() is True and watcher.shadow is not None
    reg.shadow(None)
    assert watcher.maybe_reload() is True and watcher.shadow is None


def test_watcher_keeps_the_old_model_when_a_new_one_fails(
    client: redis.Redis, trained: TrainedModel
) -> None:
    reg = ModelRegistry(client, KEY)
    good = reg.save(trained, activate=True)
    watcher = ModelWatcher(reg)
    watcher.maybe_reload()
    trained.bundle.meta["note"] = "forged"
    bad = reg.save(trained)
    del trained.bundle.meta["note"]
    client.hset(reg.version_key(bad), "sig", "0" * 64)
    client.set(reg.active_key, bad)  # `activate` refuses it: the pointer is written directly
    assert watcher.maybe_reload() is False
    assert watcher.active is not None and watcher.active.version == good
    assert isinstance(watcher.error, SignatureError)


def test_export_import_needs_the_same_key(
    client: redis.Redis, trained: TrainedModel, tmp_path: Path
) -> None:
    reg = ModelRegistry(client, KEY)
    v = reg.save(trained)
    path = reg.export(v, tmp_path / "model.fsm")
    reg.delete(v)
    assert reg.import_file(path, activate=True) == v and reg.active_version() == v
    with pytest.raises(SignatureError):
        ModelRegistry(client, b"y" * 32).import_file(path)
    (tmp_path / "junk").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a fraudstream model file"):
        reg.import_file(tmp_path / "junk")


def test_registry_key_file_is_private_and_stable(tmp_path: Path) -> None:
    key = registry_key(tmp_path / "data", create=True)
    assert len(key) >= 32 and registry_key(tmp_path / "data") == key
    assert os.stat(tmp_path / "data" / "registry.key").st_mode & 0o777 == 0o600
    with pytest.raises(ModelError, match="does not exist"):
        registry_key(tmp_path / "other", create=False)
    with pytest.raises(ModelError, match="at least"):
        ModelRegistry(redis.Redis(), b"short")
