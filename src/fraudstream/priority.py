"""CPU priority of the SQL sink: the scoring comes first.

A payment waits for its decision; the record of the ones already decided (`fraudstream
sink`, ~9 % of a core at 2,000 decisions/s, most of it the database's driver and SQL) can
wait a moment for the CPU. On a host the sink shares with the workers (the demo, a small
deployment), Linux gives runnable processes turns by weight: at nice 10 a process weighs
about a ninth of one at nice 0, so while the CPU is short the workers run first and the sink
lags, then catches up. It is never starved, and on a host of its own nothing changes. The
alerts consumer is left level: it also sends step-up codes, which a customer waits for.
"""

from __future__ import annotations

import os

MAX_NICE = 19


def yield_to_scoring(nice: int) -> int:
    """Lower this process's priority to at least ``nice`` (0 leaves it as it is; a process
    started nicer keeps its own); the niceness it runs at. Call it first thing in the entry
    point: threads started later inherit it (on Linux it applies to the calling thread)."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(max(current, nice), MAX_NICE)
    if wanted != current:
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
    return wanted
