"""``fraudstream worker --processes N``: the supervisor restarts a killed worker, stops them
all on a signal, prints a line per process, and gives up on a worker that cannot live."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import msgspec
import numpy as np
import pytest
import redis

from featkit import frame_of
from fraudstream.config import Settings
from fraudstream.features import backfill
from fraudstream.schema import Transaction
from fraudstream.scoring import build_scorer
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.report import Report, encode_report
from fraudstream.stream.supervisor import RestartPolicy, Supervisor
from test_stream import _txs
from test_worker_process import _backlog, _decided_ids, _finish_and_check, _pending, worker_env

LINE = re.compile(
    r"^worker (?P<n>\d) pid \d+: [\d,]+ tx/s, lag [\d,]+, pending [\d,]+, "
    r"p99 (-|[\d.]+ ms), \d+ partitions$",
    re.MULTILINE,
)


def _supervise(valkey_url: str, settings: Settings, *extra: str) -> subprocess.Popen[str]:
    command = ["worker", "--processes", "2", "--batch-size", "50", "--interval", "0.5", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "fraudstream", *command],
        env=worker_env(valkey_url, settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _two_workers_deciding(
    client: redis.Redis, keys: StreamKeys, proc: subprocess.Popen[str]
) -> list[int]:
    """Once both children heartbeat and decisions flow: the children's pids."""
    deadline = time.monotonic() + 40
    while client.zcard(keys.workers) < 2 or client.xlen(keys.decisions) < 1_000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the workers did not start deciding"
        time.sleep(0.05)
    names: Any = client.zrange(keys.workers, 0, -1)
    return [int(name.rsplit(b":", 1)[1]) for name in names]


def _reading(proc: subprocess.Popen[str]) -> tuple[list[str], threading.Thread]:
    """The lines ``proc`` prints on stdout, appended as they come, and the thread reading
    them (it ends with the output)."""
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    return lines, reader


def _features_match_an_offline_recount(
    client: redis.Redis, settings: Settings, txs: list[Transaction]
) -> None:
    """The feature state the workers left equals the backfill of the same transactions: a
    batch counted twice (or lost) by the killed worker shows in the probes' window counts.
    One probe per customer, an hour after the backlog, reads that state."""
    probes = _probes(txs)
    engine = build_scorer(settings, client).features  # the workers' engine, as they build it
    assert engine is not None
    online = engine.compute_batch(probes)
    offline = backfill(frame_of([*txs, *probes])).tail(len(probes))
    assert offline["transaction_id"].to_list() == [p.transaction_id for p in probes]
    names = ["customer_tx_count_1d", "customer_amount_mean_1d", "customer_tx_count_24h"]
    for name in names:
        j = engine.names.index(name)
        np.testing.assert_array_equal(online[:, j], offline[name].to_numpy(), err_msg=name)
    assert online[:, engine.names.index("customer_tx_count_24h")].sum() == len(txs) + len(probes)


def _probes(txs: list[Transaction]) -> list[Transaction]:
    """One probe per customer, an hour after ``txs``, to read its state."""
    end = max(t.timestamp for t in txs) + timedelta(hours=1)
    return [
        msgspec.structs.replace(
            txs[0], transaction_id=f"probe-{c}", customer_id=c, timestamp=end, amount=1.0
        )
        for c in sorted({t.customer_id for t in txs})
    ]


def _kept_as_streamed(client: redis.Redis, keys: StreamKeys) -> None:
    """Every streamed decision is the one kept for its id."""
    ids = _decided_ids(client, keys)
    kept = DecidedStore(client, keys.prefix).get_many(ids)
    assert all(k is not None for k in kept)
    assert [k.transaction_id for k in kept if k is not None] == ids


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_backlog_decided_once(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    # Enough for both to report first: the second child may start ~2 s after the first
    # (2 cores), and takes its share within 0.1 s of it being given back.
    total = 40_000
    keys = _backlog(client, settings, total)
    proc = _supervise(valkey_url, settings, "--burst")
    victim = _two_workers_deciding(client, keys, proc)[0]
    # Both report before one is killed: a child killed before its first interval, whose
    # replacement starts after the other has drained the backlog, would print no line.
    lines, reader = _reading(proc)
    deadline = time.monotonic() + 30
    while {m["n"] for m in LINE.finditer("".join(lines))} != {"1", "2"}:
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    os.kill(victim, signal.SIGKILL)
    assert client.xlen(keys.decisions) < total  # killed mid-run
    assert proc.stderr is not None and proc.stdout is not None
    with proc.stdout, proc.stderr:
        err = proc.stderr.read()
        proc.wait(timeout=50)
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 0, err
    ids = _decided_ids(client, keys)
    assert len(ids) == len(set(ids)) == total
    _kept_as_streamed(client, keys)
    _features_match_an_offline_recount(client, settings, _txs(total, customers=300))
    died = re.search(rf"supervisor: worker (\d) \(pid {victim}\) died \(killed by SIGKILL\)", err)
    assert died is not None, err
    assert f"supervisor: worker {died[1]} restarted (pid " in err, err.replace("\n", " | ")
    assert {m["n"] for m in LINE.finditer(out)} == {"1", "2"}, out


@pytest.mark.slow
def test_sigterm_stops_every_worker_after_its_batch(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    total = 30_000
    keys = _backlog(client, settings, total)
    proc = _supervise(valkey_url, settings)
    _two_workers_deciding(client, keys, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(re.findall(r"^worker \S+ stopped: ", err, re.MULTILINE)) == 2, err
    assert client.xlen(keys.decisions) < total  # it really stopped mid-stream
    assert _pending(client, keys) == 0  # each batch in hand was finished and acked
    assert not client.exists(*[keys.lease(p) for p in range(keys.partitions)])
    assert LINE.search(out), out
    _kept_as_streamed(client, keys)
    _finish_and_check(client, settings, total)


# --- the restart policy, on stand-in children --------------------------------------------------

FAST = RestartPolicy(first_delay_s=0.01, max_delay_s=0.02, give_up_after=3)


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", f"import sys\n{code}"]


def test_a_worker_failing_at_start_is_not_restarted() -> None:
    err = io.StringIO()
    supervisor = Supervisor(_child("sys.exit(2)"), 3, out=io.StringIO(), err=err, policy=FAST)
    assert supervisor.run() == 2
    assert err.getvalue() == ""  # the child said why; nothing restarted


def test_a_crash_looping_worker_is_given_up() -> None:
    ready = encode_report(Report(pid=1, ready=True)).decode()
    code = f"print({ready!r}, flush=True)\nsys.exit(1)"
    err = io.StringIO()
    assert Supervisor(_child(code), 1, out=io.StringIO(), err=err, policy=FAST).run() == 1
    said = err.getvalue().splitlines()
    assert len([line for line in said if "restarting in" in line]) == 2, said
    assert said[-1] == "supervisor: worker 1 died 3 times in a row: stopping the others"


def test_a_worker_still_starting_when_asked_to_stop_is_no_error() -> None:
    # The child asks its supervisor to stop while it has not installed its own handlers yet.
    code = "import os, signal, time\nos.kill(os.getppid(), signal.SIGTERM)\ntime.sleep(30)"
    err = io.StringIO()
    assert Supervisor(_child(code), 2, out=io.StringIO(), err=err, policy=FAST).run() == 0
    assert err.getvalue() == ""
