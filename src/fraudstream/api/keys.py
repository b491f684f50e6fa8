"""Scoped API keys, stored hashed in Valkey.

A key is 32 random bytes (URL-safe text, prefixed ``fsk_``), shown once when it is created.
Valkey keeps only its SHA-256 (a key is random, so a fast hash is as good as a slow one) with
its name and scopes: whoever reads the store cannot call the API. The bootstrap key (the
``api_key`` setting or the generated ``data_dir/api.key``) is never stored; it holds every
scope, so a fresh install can create the others.

Layout: ``{prefix}:keys`` hash  sha256-hex -> JSON {name, scopes, created_at};
``{prefix}:keynames`` hash  name -> sha256-hex.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import msgspec
import redis

from fraudstream.errors import ConfigError
from fraudstream.valkey import is_cluster

Scope = Literal["score", "ingest", "labels", "read", "review", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
"""``admin`` holds every other scope too."""
KEY_PREFIX = "fsk_"


class StoredKey(msgspec.Struct, frozen=True):
    name: str
    scopes: list[str]
    created_at: float


@dataclass(frozen=True)
class ApiKey:
    """Who a request is: the key's name and what it may do."""

    name: str
    scopes: frozenset[str]
    created_at: float = 0.0

    def allows(self, scope: str) -> bool:
        """``admin`` holds every scope.

        >>> ApiKey("ops", frozenset({"admin"})).allows("score")
        True
        """
        return scope in self.scopes or "admin" in self.scopes


BOOTSTRAP = ApiKey("bootstrap", frozenset({"admin"}))


def digest(secret: str | bytes) -> str:
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(raw).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, validated and de-duplicated in the canonical order.

    Raises:
        ConfigError: an unknown or missing scope, naming the valid ones.
    """
    chosen = set(scopes)
    if not chosen:
        raise ConfigError("scope", f"give at least one of {', '.join(SCOPES)}")
    unknown = sorted(chosen - set(SCOPES))
    if unknown:
        raise ConfigError("scope", f"unknown scope {unknown[0]!r}; use {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in chosen]


class KeyStore:
    """Create, list, revoke and look up scoped keys."""

    def __init__(self, client: redis.Redis, prefix: str = "api") -> None:
        self.client = client
        self.keys = f"{prefix}:keys"
        self.names = f"{prefix}:keynames"

    def create(self, name: str, scopes: Iterable[str]) -> str:
        """A new key's secret (the only time it is ever seen).

        Raises:
            ConfigError: an empty or taken name, or bad scopes.
        """
        if not name.strip() or len(name) > 64:
            raise ConfigError("name", "must be 1 to 64 characters")
        record = StoredKey(name, check_scopes(scopes), time.time())
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        sha = digest(secret)
        if not self.client.hsetnx(self.names, name, sha):
            raise ConfigError("name", f"a key named {name!r} exists (revoke it first)")
        self.client.hset(self.keys, sha, msgspec.json.encode(record))
        return secret

    def revoke(self, name: str) -> bool:
        """False if there was no such key."""
        sha: Any = self.client.hget(self.names, name)
        if sha is None:
            return False
        pipe = self.client.pipeline(transaction=not is_cluster(self.client))  # 2 slots there
        pipe.hdel(self.keys, sha)  # first: a revoke cut short leaves no key that works
        pipe.hdel(self.names, name)
        pipe.execute()
        return True

    def list(self) -> list[ApiKey]:
        raw: Any = self.client.hvals(self.keys)
        stored = [msgspec.json.decode(value, type=StoredKey) for value in raw]
        return sorted((_key(s) for s in stored), key=lambda k: k.name)

    def lookup(self, secret: bytes) -> ApiKey | None:
        """The key this secret is, or None."""
        raw: Any = self.client.hget(self.keys, digest(secret))
        return None if raw is None else _key(msgspec.json.decode(raw, type=StoredKey))


def _key(stored: StoredKey) -> ApiKey:
    return ApiKey(stored.name, frozenset(stored.scopes), stored.created_at)
