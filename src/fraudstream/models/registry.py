"""Model versions in Valkey, signed; the pointer workers follow; the watcher that follows it.

Keys (``models`` prefix; the pointers share the hash tag ``{models}`` so the multi-key
transactions below work on a Cluster too):

- ``models:v:{version}`` — HASH: ``artifact`` (signed bytes, see `artifact`), ``sig``
  (hex HMAC-SHA256), ``meta`` (JSON, for listing without decoding), ``created_at``.
  The version is the artifact's content hash.
- ``{models}:history`` — ZSET: version -> time saved.
- ``{models}:active`` — STRING: the version that decides. Activating is this one ``SET``
  (with the activation log push, in one ``MULTI``).
- ``{models}:shadow`` — STRING: a version scored beside the active one, never deciding.
- ``{models}:log`` — LIST: activations, newest first; ``rollback`` pops the head.

Workers call `ModelWatcher.maybe_reload` between batches: one ``MGET`` of the two pointers;
a fetch, HMAC check and parse only when a pointer moved.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from fraudstream.features import FeatureSet
from fraudstream.keyfile import read_or_create
from fraudstream.models import artifact
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.errors import ModelError
from fraudstream.models.train import TrainedModel

KEY_FILE = "registry.key"
LOG_LENGTH = 100


def registry_key(data_dir: Path, *, create: bool = True) -> bytes:
    """The registry's HMAC key: ``data_dir/registry.key`` (32 random bytes, mode 0600),
    created on first use like the Valkey password.

    Raises:
        ModelError: no key file and ``create`` is false, or the file is too short.
    """
    path = data_dir / KEY_FILE
    if not path.exists() and not create:
        raise ModelError(f"registry key: {path} does not exist")
    return artifact.check_key(read_or_create(path).encode())


def resolve_key(configured: str, data_dir: Path) -> bytes:
    """The configured key (``model_registry_key``, shared by every host) or the data dir's."""
    return artifact.check_key(configured.encode()) if configured else registry_key(data_dir)


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: str
    protocol: dict[str, str]
    metrics: dict[str, Any]
    threshold: float
    active: bool
    shadow: bool


class ModelRegistry:
    """Save, load, activate, roll back, shadow, delete, export and import model versions.

    Args:
        client: a Valkey/Redis client (bytes responses).
        key: the HMAC key; artifacts signed under another key are refused.
    """

    def __init__(self, client: redis.Redis, key: bytes, prefix: str = "models") -> None:
        self.client = client
        self.key = artifact.check_key(key)
        self.prefix = prefix
        tag = "{" + prefix + "}"
        self.active_key = f"{tag}:active"
        self.shadow_key = f"{tag}:shadow"
        self.log_key = f"{tag}:log"
        self.history_key = f"{tag}:history"

    def version_key(self, version: str) -> str:
        return f"{self.prefix}:v:{version}"

    # --- storing -----------------------------------------------------------------------

    def save(self, model: TrainedModel | ModelBundle, *, activate: bool = False) -> str:
        """Store a version (a no-op if the same artifact is there); returns its id."""
        bundle = model.bundle if isinstance(model, TrainedModel) else model
        data = artifact.encode(bundle)
        version = self._store(data, artifact.sign(self.key, data), bundle.meta)
        bundle.version = version
        if activate:
            self.activate(version)
        return version

    def _store(self, data: bytes, sig: str, meta: dict[str, Any]) -> str:
        version = artifact.version_of(data)
        created = str(meta.get("created_at", ""))
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(
            self.version_key(version),
            mapping={"artifact": data, "sig": sig, "meta": json.dumps(meta), "created_at": created},
        )
        pipe.zadd(self.history_key, {version: time.time()}, nx=True)
        pipe.execute()
        return version

    def load(self, version: str, definitions: FeatureSet | None = None) -> ModelBundle:
        """Fetch, verify the signature, parse; with ``definitions``, check the features.

        Raises:
            SignatureError: the HMAC does not verify (nothing was parsed).
            ModelError: unknown version, or features that differ from ``definitions``.
        """
        data, sig = self.client.hmget(self.version_key(version), ["artifact", "sig"])
        if data is None or sig is None:
            raise ModelError(f"unknown model version '{version}'")
        bundle = artifact.decode(self.key, _bytes(data), _text(sig), version=version)
        return bundle.bind(definitions) if definitions is not None else bundle

    def export(self, version: str, path: Path) -> Path:
        """Write the signed artifact to a file (`import_file` on any host with the key)."""
        data, sig = self.client.hmget(self.version_key(version), ["artifact", "sig"])
        if data is None or sig is None:
            raise ModelError(f"unknown model version '{version}'")
        artifact.verify(self.key, _bytes(data), _text(sig), what=f"model {version}")
        path.write_bytes(artifact.pack_file(_bytes(data), _text(sig)))
        return path

    def import_file(self, path: Path, *, activate: bool = False) -> str:
        """Store a file written by `export`; refused unless signed under this registry's key."""
        data, sig = artifact.unpack_file(path.read_bytes(), what=str(path))
        bundle = artifact.decode(self.key, data, sig, version=artifact.version_of(data))
        version = self._store(data, sig, bundle.meta)
        if activate:
            self.activate(version)
        return version

    # --- pointers ----------------------------------------------------------------------

    def pointers(self) -> tuple[str | None, str | None]:
        """(active, shadow) in one ``MGET``."""
        active, shadow = self.client.mget([self.active_key, self.shadow_key])
        return _opt(active), _opt(shadow)

    def active_version(self) -> str | None:
        return self.pointers()[0]

    def _require(self, version: str) -> None:
        if not self.client.exists(self.version_key(version)):
            raise ModelError(f"unknown model version '{version}'")

    def activate(self, version: str) -> None:
        """Make ``version`` the deciding model (workers switch between batches)."""
        self._require(version)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.active_key, version)
        pipe.lpush(self.log_key, version)
        pipe.ltrim(self.log_key, 0, LOG_LENGTH - 1)
        pipe.execute()

    def rollback(self) -> str:
        """Re-activate the version active before the current one; returns it.

        Raises:
            ModelError: there is no earlier activation to return to.
        """
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self.log_key, self.active_key)  # type: ignore[no-untyped-call]
                    log = [_text(v) for v in pipe.lrange(self.log_key, 0, -1)]
                    current = _opt(pipe.get(self.active_key))
                    rest = log[1:] if log and log[0] == current else log
                    rest = [v for v in rest if v != current]
                    target = next((v for v in rest if pipe.exists(self.version_key(v))), None)
                    if target is None:
                        raise ModelError("rollback: no earlier active version to return to")
                    pipe.multi()
                    pipe.set(self.active_key, target)
                    pipe.delete(self.log_key)
                    pipe.rpush(self.log_key, *log[log.index(target) :])
                    pipe.execute()
                    return target
                except redis.WatchError:
                    continue

    def shadow(self, version: str | None) -> None:
        """Score ``version`` beside the active one on every batch (``None`` stops it)."""
        if version is None:
            self.client.delete(self.shadow_key)
            return
        self._require(version)
        self.client.set(self.shadow_key, version)

    def delete(self, version: str) -> None:
        """Remove a version that is neither active nor shadow."""
        self._require(version)
        active, shadow = self.pointers()
        if version in (active, shadow):
            role = "active" if version == active else "shadow"
            raise ModelError(f"model {version} is the {role} version: activate another first")
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.version_key(version))
        pipe.zrem(self.history_key, version)
        pipe.lrem(self.log_key, 0, version)
        pipe.execute()

    # --- listing -----------------------------------------------------------------------

    def meta(self, version: str) -> dict[str, Any]:
        """The stored metadata (features, window, data hash, metrics, thresholds…)."""
        raw = self.client.hget(self.version_key(version), "meta")
        if raw is None:
            raise ModelError(f"unknown model version '{version}'")
        data: dict[str, Any] = json.loads(raw)
        return data

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first."""
        active, shadow = self.pointers()
        history = [_text(v) for v in self.client.zrange(self.history_key, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for v in history:
            pipe.hget(self.version_key(v), "meta")
        out = []
        for v, raw in zip(history, pipe.execute(), strict=True):
            if raw is None:
                continue
            meta = json.loads(raw)
            out.append(
                VersionInfo(
                    v,
                    meta.get("created_at", ""),
                    meta.get("protocol", {}),
                    meta.get("metrics", {}),
                    float(meta.get("thresholds", {}).get("review", 0.0)),
                    v == active,
                    v == shadow,
                )
            )
        return out


class ModelWatcher:
    """Keeps a worker's active and shadow models in step with the registry's pointers.

    A version that fails to load (bad signature, features changed) is not retried on every
    batch: the watcher keeps what it has, records the failure in ``error`` and tries again
    only when the pointer moves.
    """

    def __init__(self, registry: ModelRegistry, definitions: FeatureSet | None = None) -> None:
        self.registry = registry
        self.definitions = definitions
        self.active: ModelBundle | None = None
        self.shadow: ModelBundle | None = None
        self.error: ModelError | None = None
        self._failed: set[str] = set()

    def maybe_reload(self) -> bool:
        """One ``MGET``; load only what changed. True when a model was replaced or dropped."""
        active_v, shadow_v = self.registry.pointers()
        changed = False
        for role, wanted in (("active", active_v), ("shadow", shadow_v)):
            current: ModelBundle | None = getattr(self, role)
            if wanted is None:
                if current is not None and role == "shadow":
                    self.shadow, changed = None, True
                continue
            if (current is not None and current.version == wanted) or wanted in self._failed:
                continue
            try:
                bundle = self.registry.load(wanted, self.definitions)
            except ModelError as exc:
                self.error = exc
                self._failed.add(wanted)
                continue
            setattr(self, role, bundle)
            self.error, changed = None, True
        return changed


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _opt(raw: Any) -> str | None:
    return None if raw is None else _text(raw)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()
