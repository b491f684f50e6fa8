"""The worker as users run it: a separate process, stopped by signals or killed outright."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.schema import decode_decision
from fraudstream.stream.keys import GROUP, PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer
from test_stream import _txs, _worker

pytestmark = pytest.mark.slow


def worker_env(valkey_url: str, settings: Settings) -> dict[str, str]:
    """The test's settings, with short leases and claims, for a worker subprocess."""
    return {
        **os.environ,
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_PARTITIONS": str(settings.partitions),
        "FRAUDSTREAM_LEASE_TTL_MS": "1500",
        "FRAUDSTREAM_CLAIM_IDLE_MS": "500",
        "FRAUDSTREAM_BLOCK_MS": "100",
        "FRAUDSTREAM_DATA_DIR": settings.data_dir,
    }


def _spawn(
    valkey_url: str, settings: Settings, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    full = {**worker_env(valkey_url, settings), **(env or {})}
    command = ["worker", "--processes", "1", "--batch-size", "50", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "fraudstream", *command],
        env=full,
        stderr=subprocess.PIPE,
    )


def _decided_ids(client: redis.Redis, keys: StreamKeys) -> list[str]:
    entries: Any = client.xrange(keys.decisions)
    return [decode_decision(f[PAYLOAD]).transaction_id for _, f in entries]


def _wait_for_decisions(client: redis.Redis, keys: StreamKeys, n: int) -> None:
    deadline = time.monotonic() + 30
    while client.xlen(keys.decisions) < n:
        assert time.monotonic() < deadline, "worker made no progress"
        time.sleep(0.02)


def _pending(client: redis.Redis, keys: StreamKeys) -> int:
    return sum(int(client.xpending(s, GROUP)["pending"]) for s in keys.inputs())


def _backlog(client: redis.Redis, settings: Settings, total: int) -> StreamKeys:
    """``total`` transactions of 300 customers waiting in the input partitions."""
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    Producer(client, keys).send(_txs(total, customers=300))
    return keys


def _finish_and_check(client: redis.Redis, settings: Settings, total: int) -> None:
    """A fresh worker finishes the stream; then every id was decided exactly once."""
    _worker(client, settings, "finisher").run(burst=True, handle_signals=False)
    ids = _decided_ids(client, StreamKeys(settings.stream_prefix, settings.partitions))
    assert len(ids) == total, f"{total - len(set(ids))} lost, {len(ids) - len(set(ids))} doubled"
    assert len(set(ids)) == total


def test_sigterm_mid_stream_finishes_the_batch_and_loses_nothing(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    total = 30_000
    keys = _backlog(client, settings, total)
    proc = _spawn(valkey_url, settings)
    _wait_for_decisions(client, keys, 1_000)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr.decode()
    done = client.xlen(keys.decisions)
    assert 1_000 <= done < total  # it really stopped mid-stream
    assert _pending(client, keys) == 0  # the batch in hand was finished and acked
    assert not client.exists(*[keys.lease(p) for p in range(keys.partitions)])  # leases freed
    stored = re.search(r"features: ([\d,]+) stored, 0 duplicates, 0 too late", stderr.decode())
    assert stored is not None, stderr.decode()
    assert int(stored[1].replace(",", "")) == done
    _finish_and_check(client, settings, total)


def test_kill_9_mid_stream_is_recovered_by_another_worker(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    total = 30_000
    keys = _backlog(client, settings, total)
    proc = _spawn(valkey_url, settings)
    _wait_for_decisions(client, keys, 1_000)
    proc.kill()
    proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert client.xlen(keys.decisions) < total
    _finish_and_check(client, settings, total)


def _pending_of(client: redis.Redis, keys: StreamKeys, consumer: str) -> int:
    return sum(
        len(client.xpending_range(s, GROUP, "-", "+", 10_000, consumername=consumer))
        for s in keys.inputs()
    )


def _stop_holding_a_batch(
    proc: subprocess.Popen[bytes], client: redis.Redis, keys: StreamKeys
) -> None:
    """SIGSTOP the worker at a moment it has read a batch and not committed it."""
    consumer = f"{socket.gethostname()}:{proc.pid}"
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)  # stopped now, not in a moment
        assert os.WIFSTOPPED(status)
        if _pending_of(client, keys, consumer):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker was never caught holding a batch")


def test_a_worker_stopped_past_its_lease_drops_the_batch_another_worker_took(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    total = 20_000
    keys = _backlog(client, settings, total)
    # Without features a resumed worker always reaches its commit (with them, it may stop
    # before the feature write, whose WATCH then fails: the batch is retried, not dropped).
    bare = {"FRAUDSTREAM_FEATURES_ENABLED": "false"}
    a = _spawn(valkey_url, settings, env=bare)
    _wait_for_decisions(client, keys, 1_000)
    _stop_holding_a_batch(a, client, keys)
    b = _spawn(valkey_url, settings, env=bare)
    deadline = time.monotonic() + 30
    while _pending_of(client, keys, f"{socket.gethostname()}:{a.pid}"):  # b claims a's batch
        assert time.monotonic() < deadline, "b never claimed a's batch"
        time.sleep(0.05)
    a.send_signal(signal.SIGCONT)
    while sum(int(client.xlen(s)) for s in keys.inputs()):
        assert time.monotonic() < deadline + 30, "the workers did not drain the stream"
        time.sleep(0.05)
    for proc in (a, b):
        proc.send_signal(signal.SIGTERM)
    stderr = [proc.communicate(timeout=20)[1].decode() for proc in (a, b)]
    _finish_and_check(client, settings, total)
    dropped = re.search(r"([\d,]+) dropped \(lease lost", stderr[0])
    assert dropped is not None and int(dropped[1]) >= 1, stderr[0]


def test_worker_rejects_bad_settings_in_one_line(valkey_url: str) -> None:
    env = {**os.environ, "FRAUDSTREAM_VALKEY_URL": valkey_url, "FRAUDSTREAM_BATCH_SIZ": "5"}
    result = subprocess.run(
        [sys.executable, "-m", "fraudstream", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert (
        "batch_siz: unknown setting in FRAUDSTREAM_BATCH_SIZ (did you mean 'batch_size'?)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
