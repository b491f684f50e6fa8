"""Worker processes started by a command that measures them (`demo`, `loadtest`).

Both start ``fraudstream worker`` subprocesses beside the traffic they send, wait until the
workers hold every input partition, each its fair share (so the figures measure the
pipeline, not interpreter start-up or a rebalance) and stop them with SIGTERM at the end
(the batch in hand is finished and acked).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import redis

from fraudstream.config import Settings, to_environ
from fraudstream.errors import StreamError
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.leases import fair_share, holder


def spawn_worker(
    settings: Settings, processes: int, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``fraudstream worker --processes N --quiet`` with ``settings`` in its environment.

    ``new_session``: a Ctrl-C at the terminal reaches only the caller, which stops the
    workers itself once it has what it needs.
    """
    env = {**os.environ, **to_environ(settings)}
    command = [sys.executable, "-m", "fraudstream", "worker"]
    return subprocess.Popen(
        [*command, "--processes", str(processes), "--quiet"],
        env=env,
        start_new_session=new_session,
    )


def wait_for_partitions(
    client: redis.Redis,
    keys: StreamKeys,
    holders: int,
    procs: Sequence[subprocess.Popen[bytes]],
    timeout: float = 30.0,
) -> None:
    """Until every partition is leased, at least ``holders`` consumers hold them, and none
    holds more than its fair share (`fraudstream.stream.leases`): a consumer over its share
    gives the extras back at its next heartbeat, and they wait for a taker meanwhile.

    Raises:
        StreamError: one of ``procs`` exited, or ``timeout`` passed.
    """
    deadline = time.monotonic() + timeout
    leases = [keys.lease(p) for p in range(keys.partitions)]
    wanted = min(holders, keys.partitions)
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for lease in leases:  # one GET each: on a cluster the leases live in different slots
            pipe.get(lease)
        owners: list[bytes | None] = pipe.execute()
        held = Counter(holder(owner) for owner in owners if owner is not None)
        fair = fair_share(keys.partitions, len(held))
        if None not in owners and len(held) >= wanted and max(held.values()) <= fair:
            return
        if any(proc.poll() is not None for proc in procs):
            raise StreamError("a worker exited at start-up (see its error above)")
        time.sleep(0.1)
    raise StreamError(f"workers did not take their partitions within {timeout:g}s")


def stop_all(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM to each (they finish the batch in hand), SIGKILL to one still alive after
    ``timeout``."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def last_id(client: redis.Redis, stream: str) -> bytes:
    """The id of the newest entry of ``stream`` (``0-0`` when empty): read after it."""
    entries: Any = client.xrevrange(stream, count=1)
    return entries[0][0] if entries else b"0-0"
