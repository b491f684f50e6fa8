"""Shared fixtures: one real Valkey server for the session, a clean keyspace per test.

The server is fraudstream's own embedded one, started on a free port in a temp dir, so the
suite also exercises the lifecycle code users rely on. ``FRAUDSTREAM_TEST_VALKEY_URL`` points
the suite at an external server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.valkey import EmbeddedValkey


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("FRAUDSTREAM_TEST_VALKEY_URL")
    if external:
        yield external
        return
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey-session"))
    info = server.ensure()
    try:
        yield f"redis://:{info.password}@{info.host}:{info.port}/0"
    finally:
        server.stop()


@pytest.fixture
def client(valkey_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly flushed keyspace."""
    conn = redis.Redis.from_url(valkey_url)
    conn.flushall()
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def settings(tmp_path: Path, valkey_url: str, client: redis.Redis) -> Settings:
    """Settings pointing at the session server, small partitions for fast tests."""
    return Settings(
        data_dir=str(tmp_path / "data"),
        valkey_url=valkey_url,
        partitions=4,
        block_ms=100,
        lease_ttl_ms=3000,
        claim_idle_ms=1000,
    )
