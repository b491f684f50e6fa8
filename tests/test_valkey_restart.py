"""Valkey stopped and started again under load (AOF everysec, the embedded server's own
settings): the worker resumes by itself and nothing is lost or decided twice.

The test runs its own server (a private data dir), since it stops it; the worker is a
process, as users run it, with its reconnect backoff."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.stream.keys import StreamKeys
from fraudstream.valkey import EmbeddedValkey, alive
from test_stream import _txs
from test_supervisor import _features_match_an_offline_recount, _kept_as_streamed
from test_worker_process import _backlog, _decided_ids, worker_env

pytestmark = pytest.mark.slow
TOTAL = 6_000


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "server")
    server.ensure()
    try:
        yield server
    finally:
        server.stop()


def _url(server: EmbeddedValkey) -> str:
    info = server.status()
    assert info is not None
    return f"redis://:{info.password}@{info.host}:{info.port}/0"


def _wait_until(done: object, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert proc.poll() is None, f"the worker exited: {proc.communicate()[1].decode()}"
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_pipeline_resumes_after_valkey_restarts_and_decides_each_once(
    own_server: EmbeddedValkey, tmp_path: Path, how: signal.Signals
) -> None:
    """SIGTERM is a graceful shutdown (AOF fsync'ed); SIGKILL loses nothing acknowledged
    either, because each write reaches the kernel before its reply (only a machine failure
    loses the last second). Either way the worker's batch in hand at the stop is re-read
    and decided once, and the features count each transaction once."""
    url = _url(own_server)
    client = redis.Redis.from_url(url)
    settings = Settings(data_dir=str(tmp_path / "data"), valkey_url=url, partitions=4)
    keys = _backlog(client, settings, TOTAL)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "worker", "--processes", "1", "--batch-size", "50"],
        env=worker_env(url, settings),
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until(lambda: client.xlen(keys.decisions) >= 500, proc, "no decisions", 30)
        _restart(own_server, how)
        assert client.xlen(keys.decisions) < TOTAL  # stopped mid-run
        _wait_until(lambda: _decided(client, keys) >= TOTAL, proc, "no resumption", 60)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"valkey unreachable" in err  # it did see the server go
    ids = _decided_ids(client, keys)
    assert len(ids) == len(set(ids)) == TOTAL
    _kept_as_streamed(client, keys)
    _features_match_an_offline_recount(client, settings, _txs(TOTAL, customers=300))


def _decided(client: redis.Redis, keys: StreamKeys) -> int:
    try:
        return int(client.xlen(keys.decisions))
    except redis.ConnectionError:
        return 0


def _restart(server: EmbeddedValkey, how: signal.Signals) -> None:
    """Stop the server by ``how`` and start it again on its port and data dir."""
    info = server.status()
    assert info is not None
    port = info.port
    os.kill(info.pid, how)
    deadline = time.monotonic() + 10
    while alive(info.pid):
        assert time.monotonic() < deadline, "the server did not stop"
        time.sleep(0.02)
    again = server.ensure()
    assert again.port == port and again.pid != info.pid
