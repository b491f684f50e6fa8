"""Model versions in Valkey, signed, and the pointers workers follow (see `watcher`).

Keys (``models`` prefix; the pointers share the hash tag ``{models}`` so the multi-key
transactions below work on a Cluster too):

- ``models:v:{version}`` — HASH: ``artifact`` (signed bytes, see `artifact`), ``sig``
  (hex HMAC-SHA256), ``meta`` (JSON, for listing without decoding), ``meta_sig`` (its HMAC,
  bound to the version), ``created_at``. The version is the artifact's content hash, checked
  on every load.
- ``{models}:history`` — ZSET: version -> time saved.
- ``{models}:active`` — STRING: the version that decides. Activating is this one ``SET``
  (with the activation log push, in one ``MULTI``).
- ``{models}:shadow`` — STRING: a version scored beside the active one, never deciding.
- ``{models}:log`` — LIST: activations, newest first; ``rollback`` pops the head.

Nothing is trusted unread: `activate`, `shadow` and `rollback` load (check id and signature,
parse, and with feature definitions bind) the version before moving a pointer; listing checks
each version's metadata HMAC. The key comes from a `KeySource`, read when first needed, so a
worker started before the first model exists follows the model trained later on its host.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from fraudstream.config import Settings
from fraudstream.features import FeatureSet
from fraudstream.models import artifact
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.errors import (
    ModelError,
    NothingToPromoteError,
    SignatureError,
    UnknownVersionError,
)
from fraudstream.models.keys import KeySource
from fraudstream.models.train import TrainedModel

LOG_LENGTH = 100


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: str
    protocol: dict[str, str]
    metrics: dict[str, Any]
    threshold: float
    active: bool
    shadow: bool
    verified: bool = True
    """False: the metadata's HMAC does not verify, so the figures above are blanked."""


class ModelRegistry:
    """Save, load, activate, roll back, shadow, delete, export and import model versions.

    Args:
        client: a Valkey/Redis client (bytes responses).
        key: the HMAC key, or where to read it when first needed; artifacts signed under
            another key are refused.
    """

    def __init__(self, client: redis.Redis, key: bytes | KeySource, prefix: str = "models") -> None:
        self.client = client
        self._source = key if isinstance(key, KeySource) else None
        self._key = None if isinstance(key, KeySource) else artifact.check_key(key)
        self.origin = key.origin if isinstance(key, KeySource) else ""
        self.prefix = prefix
        tag = "{" + prefix + "}"
        self.active_key = f"{tag}:active"
        self.shadow_key = f"{tag}:shadow"
        self.log_key = f"{tag}:log"
        self.history_key = f"{tag}:history"

    def version_key(self, version: str) -> str:
        return f"{self.prefix}:v:{version}"

    # --- the key -----------------------------------------------------------------------

    @property
    def key(self) -> bytes:
        """The HMAC key (read from the `KeySource` on first use).

        Raises:
            MissingKeyError: this host has no key.
        """
        if self._key is None:
            assert self._source is not None
            self._key = self._source.load()
        return self._key

    def stored(self) -> int:
        """How many versions the registry holds."""
        return int(self.client.zcard(self.history_key))

    def check_key(self) -> None:
        """Refuse to go on without a key while versions are stored (a key made up now would
        verify none of them).

        Raises:
            MissingKeyError: naming the setting and the key file.
        """
        if self._source is not None and not self._source.available():
            if stored := self.stored():
                raise self._source.missing(stored)

    def create_key(self) -> Path | None:
        """Create the key file if this host has no key and the registry is empty, as the
        command storing the first model does; the file when this call made it.

        Raises:
            MissingKeyError: versions are stored (they were signed under a key found elsewhere).
        """
        self.check_key()
        return self._source.create() if self._source is not None else None

    # --- storing -----------------------------------------------------------------------

    def save(self, model: TrainedModel | ModelBundle, *, activate: bool = False) -> str:
        """Store a version (a no-op if the same artifact is there); returns its id."""
        bundle = model.bundle if isinstance(model, TrainedModel) else model
        data = artifact.encode(bundle)
        version = self._store(data, artifact.sign(self.key, data), bundle.meta)
        bundle.version = version
        if activate:
            self._point(version)  # just signed from this bundle: nothing to check
        return version

    def _store(self, data: bytes, sig: str, meta: dict[str, Any]) -> str:
        version = artifact.version_of(data)
        created = str(meta.get("created_at", ""))
        doc = json.dumps(meta)
        meta_sig = artifact.sign_meta(self.key, version, doc.encode())
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(
            self.version_key(version),
            mapping={
                "artifact": data,
                "sig": sig,
                "meta": doc,
                "meta_sig": meta_sig,
                "created_at": created,
            },
        )
        pipe.zadd(self.history_key, {version: time.time()}, nx=True)
        pipe.execute()
        return version

    def load(self, version: str, definitions: FeatureSet | None = None) -> ModelBundle:
        """Fetch, check id and signature, parse; with ``definitions``, check the features.

        Raises:
            SignatureError: the HMAC does not verify (nothing was parsed).
            MissingKeyError: this host has no key.
            ModelError: unknown version, an artifact whose content hash is not ``version``,
                or features that differ from ``definitions``.
        """
        data, sig = self._fetch(version)
        bundle = artifact.decode(self.key, data, sig, version=version, origin=self.origin)
        return bundle.bind(definitions) if definitions is not None else bundle

    def _fetch(self, version: str) -> tuple[bytes, str]:
        data, sig = self.client.hmget(self.version_key(version), ["artifact", "sig"])
        if data is None or sig is None:
            raise UnknownVersionError(f"unknown model version '{version}'")
        return _bytes(data), _text(sig)

    def export(self, version: str, path: Path) -> Path:
        """Write the signed artifact to a file (`import_file` on any host with the key)."""
        data, sig = self._fetch(version)
        artifact.check(self.key, data, sig, version=version, origin=self.origin)
        path.write_bytes(artifact.pack_file(data, sig))
        return path

    def import_file(self, path: Path, *, activate: bool = False) -> str:
        """Store a file written by `export`; refused unless signed under this registry's key."""
        data, sig = artifact.unpack_file(path.read_bytes(), what=str(path))
        version = artifact.version_of(data)
        bundle = artifact.decode(self.key, data, sig, version=version, origin=self.origin)
        self._store(data, sig, bundle.meta)
        if activate:
            self._point(version)
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
            raise UnknownVersionError(f"unknown model version '{version}'")

    def activate(self, version: str, definitions: FeatureSet | None = None) -> None:
        """Make ``version`` the deciding model (workers switch between batches), once it
        loads here: id, signature and, with ``definitions``, the features.

        Raises:
            ModelError: the version does not load (see `load`); the pointer did not move.
        """
        self.load(version, definitions)
        self._point(version)

    def _point(self, version: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.active_key, version)
        pipe.lpush(self.log_key, version)
        pipe.ltrim(self.log_key, 0, LOG_LENGTH - 1)
        pipe.execute()

    def rollback(self) -> str:
        """Re-activate the version active before the current one, once it loads; returns it.

        Raises:
            ModelError: there is no earlier activation to return to, or it does not load.
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
                    self.load(target)
                    pipe.multi()
                    pipe.set(self.active_key, target)
                    pipe.delete(self.log_key)
                    pipe.rpush(self.log_key, *log[log.index(target) :])
                    pipe.execute()
                    return target
                except redis.WatchError:
                    continue

    def promote(self, version: str | None, definitions: FeatureSet | None = None) -> str:
        """Make ``version`` (default: the shadow) active once it loads here, as `activate`
        does, and stop shadowing it if it was the shadow; returns the version promoted.

        Raises:
            NothingToPromoteError: no version given and no shadow set.
            UnknownVersionError: ``version`` is not stored.
            ModelError: the version does not load (see `load`); no pointer moved.
        """
        shadow = self.pointers()[1]
        chosen = version or shadow
        if chosen is None:
            raise NothingToPromoteError("no shadow model to promote: name a version")
        self.activate(chosen, definitions)
        if chosen == shadow:
            self.shadow(None)
        return chosen

    def shadow(self, version: str | None, definitions: FeatureSet | None = None) -> None:
        """Score ``version`` beside the active one on every batch (``None`` stops it), once
        it loads here like `activate`'s."""
        if version is None:
            self.client.delete(self.shadow_key)
            return
        self.load(version, definitions)
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
        """The stored metadata (features, window, data hash, metrics, thresholds…).

        Raises:
            SignatureError: its HMAC does not verify.
        """
        raw, sig = self.client.hmget(self.version_key(version), ["meta", "meta_sig"])
        if raw is None:
            raise UnknownVersionError(f"unknown model version '{version}'")
        doc = _bytes(raw)
        artifact.verify_meta(self.key, version, doc, _opt(sig), origin=self.origin)
        data: dict[str, Any] = json.loads(doc)
        return data

    def versions(self) -> list[VersionInfo]:
        """Every stored version, oldest first; one whose metadata does not verify is listed
        with ``verified`` false and no figures."""
        active, shadow = self.pointers()
        history = [_text(v) for v in self.client.zrange(self.history_key, 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for v in history:
            pipe.hmget(self.version_key(v), ["meta", "meta_sig"])
        out = []
        for v, (raw, sig) in zip(history, pipe.execute(), strict=True):
            if raw is None:
                continue
            try:
                artifact.verify_meta(self.key, v, _bytes(raw), _opt(sig))
                meta, verified = json.loads(raw), True
            except SignatureError:
                meta, verified = {}, False
            out.append(
                VersionInfo(
                    v,
                    meta.get("created_at", ""),
                    meta.get("protocol", {}),
                    meta.get("metrics", {}),
                    float(meta.get("thresholds", {}).get("review", 0.0)),
                    v == active,
                    v == shadow,
                    verified,
                )
            )
        return out


def host_registry(settings: Settings, client: redis.Redis) -> ModelRegistry:
    """The registry as this host's commands and server open it: under its `KeySource`
    (``model_registry_key``, else the data dir's key file), read when first needed."""
    return ModelRegistry(client, KeySource(settings.model_registry_key, settings.data_path))


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _opt(raw: Any) -> str | None:
    return None if raw is None else _text(raw)


def _bytes(raw: Any) -> bytes:
    return raw if isinstance(raw, bytes) else str(raw).encode()
