"""Shared fixtures: one real Valkey server for the session, a clean keyspace per test.

The server is fraudstream's own embedded one, started on a free port in a temp dir, so the
suite also exercises the lifecycle code users rely on. ``FRAUDSTREAM_TEST_VALKEY_URL`` points
the suite at an external server instead; ``FRAUDSTREAM_TEST_SERVER=redis`` starts Debian's
``redis-server`` (Redis 7, ``make redis``) the same way, to run the whole suite on plain Redis.
`redis_url` is such a Redis server whatever the setting, for the always-run compatibility tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis

from fraudstream.config import Settings
from fraudstream.valkey import EmbeddedValkey

# Hypothesis' per-example deadline is a timing assertion: on a shared, loaded host it fails
# tests that are correct. Speed is measured in benchmarks/, never in unit tests.
hypothesis.settings.register_profile("fraudstream", deadline=None)
hypothesis.settings.load_profile("fraudstream")


REDIS_SERVER = Path("/usr/bin/redis-server")
"""Debian's Redis 7 (package ``redis-server``, installed by ``make redis``)."""


@contextmanager
def _server(folder: Path, binary: Path | None = None) -> Iterator[str]:
    """The URL of a server started as fraudstream starts its own (loopback, password, AOF
    everysec, private dir), stopped on exit; ``binary`` replaces the embedded Valkey."""
    if binary is not None and not binary.is_file():
        pytest.fail(f"{binary} is missing: run `make redis` (Debian package redis-server)")
    server = EmbeddedValkey(folder, binary=binary)
    info = server.ensure()
    try:
        yield f"redis://:{info.password}@{info.host}:{info.port}/0"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def valkey_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("FRAUDSTREAM_TEST_VALKEY_URL")
    if external:
        yield external
        return
    kind = os.environ.get("FRAUDSTREAM_TEST_SERVER", "valkey")
    if kind not in ("valkey", "redis"):
        pytest.fail(f"FRAUDSTREAM_TEST_SERVER: must be valkey or redis, got {kind!r}")
    with _server(
        tmp_path_factory.mktemp(f"{kind}-session"), REDIS_SERVER if kind == "redis" else None
    ) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis 7 server (Debian's) for the session, whatever the suite runs on."""
    with _server(tmp_path_factory.mktemp("redis-session"), REDIS_SERVER) as url:
        yield url


@contextmanager
def _flushed(url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(url)
    conn.flushall()
    try:
        yield conn
    finally:
        conn.close()


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        valkey_url=url,
        partitions=4,
        block_ms=100,
        lease_ttl_ms=3000,
        claim_idle_ms=1000,
    )


@pytest.fixture
def client(valkey_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly flushed keyspace."""
    with _flushed(valkey_url) as conn:
        yield conn


@pytest.fixture
def settings(tmp_path: Path, valkey_url: str, client: redis.Redis) -> Settings:
    """Settings pointing at the session server, small partitions for fast tests."""
    return _settings(tmp_path, valkey_url)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """`client`, on the session's Redis 7 server."""
    with _flushed(redis_url) as conn:
        yield conn


@pytest.fixture
def redis_settings(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> Settings:
    """`settings`, pointing at the session's Redis 7 server."""
    return _settings(tmp_path, redis_url)


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
        worker = subprocess.Popen([*cli, "worker", "--processes", "1", "--quiet"], env=full)
        generate = subprocess.Popen(
            [*cli, "generate", "--tps", "300", "--duration", "120", "--run-id", "live", "--json"],
            env=full,
            stdout=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while client.xlen("tx.decisions") < 200:  # traffic flows and is scored
                assert time.monotonic() < deadline, "no decisions"
                assert generate.poll() is None, "generate stopped early"
                time.sleep(0.1)
            before = time.time()
            change()
            after = time.time()
            # Traffic goes on until decisions well after the change exist, however slow the
            # machine was to run ``change`` (a loaded CI host can take seconds).
            while _last_decided_at(client) < after + 3:
                assert time.monotonic() < deadline + 60, "no decisions after the change"
                assert generate.poll() is None, "generate stopped early"
                time.sleep(0.1)
        finally:
            worker.terminate()
            worker.communicate(timeout=30)
            generate.kill()
            generate.communicate()
        entries: Any = client.xrange("tx.decisions")
        return before, after, [json.loads(fields[b"d"]) for _, fields in entries]

    return run


def _last_decided_at(client: redis.Redis) -> float:
    last: Any = client.xrevrange("tx.decisions", count=1)
    if not last:
        return 0.0
    return datetime.fromisoformat(json.loads(last[0][1][b"d"])["decided_at"]).timestamp()


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[redis.Redis]]:
    """A three-primary Valkey cluster on loopback, started as `fraudstream cluster up` starts
    one: a client on each of its nodes."""
    from fraudstream.cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("valkey-cluster"))
    try:
        password = cluster.password()
        yield [redis.Redis(port=s.port, password=password) for s in cluster.up(3, 0)]
    finally:
        cluster.down()


@pytest.fixture
def cluster_client(cluster_nodes: list[redis.Redis]) -> Iterator[redis.RedisCluster]:
    """A cluster client on freshly flushed nodes."""
    from redis.cluster import ClusterNode

    kwargs = cluster_nodes[0].get_connection_kwargs()
    first = ClusterNode(kwargs["host"], kwargs["port"])  # type: ignore[no-untyped-call]
    conn = redis.RedisCluster(startup_nodes=[first], password=kwargs["password"])
    for node in cluster_nodes:
        node.flushall()
    try:
        yield conn
    finally:
        conn.close()
