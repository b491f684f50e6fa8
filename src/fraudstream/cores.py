"""One core for a one-process API server: its threads take turns anyway.

`fraudstream serve` runs an event loop (HTTP) and a thread deciding the micro-batches
(`fraudstream.api.batcher`); they take turns on Python's GIL, and every request crosses
between them twice. A thread woken on the other core waits for that core to wake up as well
(on this 2-core virtual machine ~85 µs against ~35 µs on the same core), and its data then
moves between the cores' caches. Pinned to one core, the two hand over in place, and the
other core is left to Valkey and the rest. `benchmarks/bench_api.py`'s clients against two
servers, ``api_pin_core`` off and on, side by side (runs alternated): one request at a time
p50 2.10 → 1.99 ms (6 runs of 800 each: ranges 2.09–2.12 and 1.98–2.00); 16 connections
2,764 → 3,233 req/s and p99 at 500 req/s 7.06 → 5.04 ms (4 runs of 2 s each).

Only a server of one process pins itself (`serve --workers 1`, setting ``api_pin_core``):
the children of ``--workers N`` have no number to choose distinct cores by, and the
scheduler spreads them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def pin_to_one_core() -> int | None:
    """Keep this process's threads on one of the cores it may run on (the highest-numbered):
    those running (the imports' thread pools: OpenBLAS, OpenMP) and those started later by
    the calling thread, which inherit it; that core, or None where the platform has no CPU
    affinity or only one core is allowed. On Linux the affinity is per thread."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    core = allowed[-1]
    os.sched_setaffinity(0, {core})
    for tid in _threads():
        with contextlib.suppress(OSError):  # it ended meanwhile
            os.sched_setaffinity(tid, {core})
    return core


def _threads() -> list[int]:
    """Thread ids of this process (Linux: ``/proc/self/task``; elsewhere none)."""
    tasks = Path("/proc/self/task")
    return [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else []
