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
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """A three-primary Valkey cluster on loopback (the embedded binary, no persistence):
    the ports of its nodes."""
    from fraudstream.valkey import find_binary

    base = tmp_path_factory.mktemp("valkey-cluster")
    ports, buses, procs = [], [], []
    for i in range(3):
        port, bus = _free_port(), _free_port()
        folder = base / str(i)
        folder.mkdir()
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", str(folder / "nodes.conf")]
        # The bus port defaults to port + 10000, which may be taken or beyond 65535.
        args += ["--cluster-port", str(bus), "--save", "", "--appendonly", "no"]
        with (folder / "server.log").open("w") as log:
            procs.append(subprocess.Popen([str(find_binary()), *args], stdout=log, stderr=log))
        ports.append(port)
        buses.append(bus)
    try:
        nodes = [redis.Redis(port=port) for port in ports]
        for node in nodes:
            _wait(node.ping)
        ranges = [(0, 5460), (5461, 10922), (10923, 16383)]
        for node, (low, high) in zip(nodes, ranges, strict=True):
            node.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)  # type: ignore[no-untyped-call]
        for port, bus in zip(ports[1:], buses[1:], strict=True):
            nodes[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)  # type: ignore[no-untyped-call]
        _wait(lambda: all(n.cluster("info")["cluster_state"] == "ok" for n in nodes) or None)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@pytest.fixture
def cluster_client(cluster_nodes: list[int]) -> Iterator[redis.RedisCluster]:
    """A cluster client on freshly flushed nodes."""
    from redis.cluster import ClusterNode

    first = ClusterNode("127.0.0.1", cluster_nodes[0])  # type: ignore[no-untyped-call]
    conn = redis.RedisCluster(startup_nodes=[first])
    for port in cluster_nodes:
        redis.Redis(port=port).flushall()
    try:
        yield conn
    finally:
        conn.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait(probe: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if probe():
                return
        except redis.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the test cluster did not come up (see server.log in its dir)")
        time.sleep(0.1)
