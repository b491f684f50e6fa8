"""Registry versions to distrust: a second genuine version, and bytes flipped behind the
registry's back."""

from __future__ import annotations

import redis

from fraudstream.models import ModelRegistry, TrainedModel


def tamper(client: redis.Redis, registry: ModelRegistry, version: str) -> None:
    """Flip one bit of the stored artifact."""
    data = client.hget(registry.version_key(version), "artifact")
    assert isinstance(data, bytes)
    client.hset(registry.version_key(version), "artifact", data[:-1] + bytes([data[-1] ^ 1]))


def second_version(registry: ModelRegistry, trained: TrainedModel) -> str:
    """Store a second genuine version of ``trained`` (one metadata field more); its id."""
    trained.bundle.meta["note"] = "second"
    try:
        return registry.save(trained)
    finally:
        del trained.bundle.meta["note"]
