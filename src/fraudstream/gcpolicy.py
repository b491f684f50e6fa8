"""Garbage collection in the long-running processes: what start-up loaded is frozen.

A worker has ~250,000 container objects once its scorer is built (modules, the model and
its explainer, the compiled rules, the feature plan); a server process builds the same
scorer. Python's oldest-generation collection walks all of them, 75–105 ms here, whenever
enough new long-lived objects have piled up: 3 to 4 times per worker in a three-minute
latency run at 5,000 tx/s, 3 to 5 times per server process in the 30-s API benchmark
(pauses of 57–143 ms). The process decides nothing meanwhile: at 5,000 tx/s the ~250
transactions a worker gets during a pause are that much late, ~1 % of a six-second run,
enough to set its p99. Frozen (`gc.freeze`), they are never walked again: a full
collection takes ~6 ms. They are still freed by reference counting; only a reference cycle
among them would never be, and start-up objects live until the process exits anyway.
"""

from __future__ import annotations

import gc


def freeze_startup(young_threshold: int | None = None) -> None:
    """Collect once, then move every object alive into the permanent generation. Call it
    after start-up, before the loop, in the process's entry point (not in a library call:
    a test process would then keep what its earlier tests left in cycles).

    ``young_threshold``: allocations between young-generation collections (Python's
    default: 700), for a loop that allocates many containers without cycles.
    """
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
