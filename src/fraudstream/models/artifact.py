"""The artifact: one model version as signed bytes, with no pickle anywhere.

Layout (msgpack via msgspec): ``format``, ``meta`` (JSON-able dict), ``booster`` (LightGBM's
own text format, ``model_to_string``), ``anomaly`` (the isolation forest's flat arrays as raw
little-endian bytes with dtype and shape, or nil). The signature is HMAC-SHA256 of those bytes
under the registry key; `decode` refuses to parse anything whose signature does not verify or
whose content hash is not the version id it is loaded as, so a forged or altered artifact is
never deserialised and a signed one copied under another id is never reported under that id.
The metadata the registry keeps beside an artifact for listing has its own HMAC (`sign_meta`),
bound to the version id. An exported file is ``FSMODEL1\\n`` + hex signature + ``\\n`` +
artifact.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import lightgbm as lgb
import msgspec
import numpy as np

from fraudstream.models.anomaly import IsolationForestModel
from fraudstream.models.bundle import ModelBundle
from fraudstream.models.combine import Stacker
from fraudstream.models.errors import ModelError, SignatureError

FORMAT = 1
MAGIC = b"FSMODEL1\n"
MIN_KEY_BYTES = 16


class _Array(msgspec.Struct, frozen=True):
    dtype: str
    shape: list[int]
    data: bytes


class _Artifact(msgspec.Struct, frozen=True):
    format: int
    meta: dict[str, Any]
    booster: str
    anomaly: dict[str, _Array] | None


def check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
        raise ModelError(f"registry key: need at least {MIN_KEY_BYTES} bytes")
    return key


def encode(bundle: ModelBundle) -> bytes:
    """The bundle as artifact bytes (deterministic for a given bundle)."""
    anomaly = None
    if bundle.anomaly is not None:
        anomaly = {
            name: _Array(
                str(a.dtype),
                list(a.shape),
                np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes(),
            )
            for name, a in bundle.anomaly.arrays().items()
        }
    meta = {**bundle.meta, "stacker": bundle.stacker.to_dict()}
    art = _Artifact(FORMAT, meta, bundle.booster.model_to_string(), anomaly)
    return msgspec.msgpack.encode(art)


def sign(key: bytes, artifact: bytes) -> str:
    return hmac.new(check_key(key), artifact, hashlib.sha256).hexdigest()


def verify(key: bytes, artifact: bytes, signature: str, *, what: str, origin: str = "") -> None:
    """Raises `SignatureError` unless ``signature`` is the artifact's HMAC under ``key``
    (``origin``: where the key came from, named in the message)."""
    if not hmac.compare_digest(sign(key, artifact), signature):
        under = f" under the key from {origin}" if origin else ""
        raise SignatureError(
            f"{what}: signature check failed{under} (another key, or the artifact was "
            "altered); refusing to load it"
        )


def check(key: bytes, artifact: bytes, signature: str, *, version: str, origin: str = "") -> None:
    """The artifact is ``version``'s (its content hash) and signed under ``key``.

    Raises:
        ModelError: the content hash is another version's (a copy stored under a false id).
        SignatureError: the HMAC does not verify.
    """
    verify(key, artifact, signature, what=f"model {version}", origin=origin)
    actual = version_of(artifact)
    if actual != version:
        raise ModelError(
            f"model {version}: the artifact's content hash is {actual}, not its id (a copy "
            "stored under another id); refusing to load it"
        )


def sign_meta(key: bytes, version: str, meta: bytes) -> str:
    """HMAC of a version's listing metadata, bound to its id (and never equal to an artifact
    signature: an artifact never starts with ``meta\\n``)."""
    return sign(key, b"meta\n" + version.encode() + b"\n" + meta)


def verify_meta(
    key: bytes, version: str, meta: bytes, signature: str | None, *, origin: str = ""
) -> None:
    """Raises `SignatureError` unless ``signature`` is `sign_meta` of ``meta``."""
    if signature is None or not hmac.compare_digest(sign_meta(key, version, meta), signature):
        under = f" under the key from {origin}" if origin else ""
        why = "unsigned" if signature is None else "altered, or signed under another key"
        raise SignatureError(f"model {version}: metadata signature check failed{under} ({why})")


def decode(
    key: bytes, artifact: bytes, signature: str, *, version: str, origin: str = ""
) -> ModelBundle:
    """`check`, then parse: nothing is parsed unless the id and the signature hold."""
    check(key, artifact, signature, version=version, origin=origin)
    try:
        art = msgspec.msgpack.decode(artifact, type=_Artifact)
    except msgspec.MsgspecError as exc:
        raise ModelError(f"model {version}: unreadable artifact: {exc}") from None
    if art.format != FORMAT:
        raise ModelError(f"model {version}: artifact format {art.format}, this code reads {FORMAT}")
    booster = lgb.Booster(model_str=art.booster)
    anomaly = None
    if art.anomaly is not None:
        arrays = {
            name: np.frombuffer(a.data, dtype=np.dtype(a.dtype).newbyteorder("<")).reshape(a.shape)
            for name, a in art.anomaly.items()
        }
        anomaly = IsolationForestModel.from_arrays(arrays)
    stacker = Stacker.from_dict(art.meta["stacker"])
    return ModelBundle(booster, stacker, anomaly, art.meta, version=version)


def version_of(artifact: bytes) -> str:
    """A version id: the first 12 hex digits of the artifact's SHA-256."""
    return hashlib.sha256(artifact).hexdigest()[:12]


def pack_file(artifact: bytes, signature: str) -> bytes:
    return MAGIC + signature.encode() + b"\n" + artifact


def unpack_file(data: bytes, *, what: str) -> tuple[bytes, str]:
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 65:
        raise ModelError(f"{what}: not a fraudstream model file")
    sig = data[len(MAGIC) : len(MAGIC) + 64].decode("ascii", "replace")
    return data[len(MAGIC) + 65 :], sig
