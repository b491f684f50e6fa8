"""Shared fixtures: one real Valkey server for the session, a clean keyspace per test.

The server is fraudstream's own embedded one, started on a free port in a temp dir, so the
suite also exercises the lifecycle code users rely on. ``FRAUDSTREAM_TEST_VALKEY_URL`` points
the suite at an external server instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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


LiveChange = Callable[[Mapping[str, str], Callable[[], None]], tuple[float, float, list[Any]]]


@pytest.fixture
def live_change(client: redis.Redis) -> LiveChange:
    """Run a worker and `fraudstream generate` as subprocesses; once decisions flow, call
    ``change()``; when the traffic ends return (time before change, time after it, decisions).

    For tests of what a running system does when something is published mid-stream.
    """

    def run(env: Mapping[str, str], change: Callable[[], None]) -> tuple[float, float, list[Any]]:
        full = {**os.environ, **env, "FRAUDSTREAM_BLOCK_MS": "100"}
        cli = [sys.executable, "-m", "fraudstream"]
        worker = subprocess.Popen([*cli, "worker", "--quiet"], env=full)
        generate = subprocess.Popen(
            [*cli, "generate", "--tps", "300", "--duration", "8", "--run-id", "live", "--json"],
            env=full,
            stdout=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while client.xlen("tx.decisions") < 200:  # traffic flows and is scored
                assert time.monotonic() < deadline, "no decisions"
                time.sleep(0.1)
            before = time.time()
            change()
            after = time.time()
            generate.communicate(timeout=60)
            assert generate.returncode == 0
            time.sleep(1.0)
        finally:
            worker.terminate()
            worker.communicate(timeout=30)
            generate.kill()
            generate.communicate()
        entries: Any = client.xrange("tx.decisions")
        return before, after, [json.loads(fields[b"d"]) for _, fields in entries]

    return run
