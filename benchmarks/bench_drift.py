"""Drift's cost in the scoring path: one `DriftWindow.observe` per batch of 500 rows.

Run: ``python benchmarks/bench_drift.py [--json] [--repeats N]``. A batch of 500 rows × 62
live feature columns (the online set's width) and its scores, against a reference with the
score and 5 features (ten-ish bins each): the microseconds per batch the scorer's
``on_scored`` hook adds (score + 5 features: a `np.searchsorted` and a `np.bincount` each,
the window's sum kept up to date), and the figures' cost (PSI of the 6 distributions, done
every 5 s by the worker's tick, not per batch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from fraudstream.drift.reference import build_reference
from fraudstream.drift.window import DriftWindow

BATCH = 500
COLUMNS = 62
TOP = 5


def per_call_us(action: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(COLUMNS)]
    X = rng.lognormal(0, 1, (20_000, COLUMNS))
    X[rng.random(X.shape) < 0.05] = np.nan
    scores = np.clip(rng.exponential(40, 20_000), 0, 1000).round()
    importance = {n: float(COLUMNS - j) for j, n in enumerate(names)}
    reference = build_reference(scores, X, names, importance, {"review": 400, "block": 800})
    window = DriftWindow(reference, "bench", names)
    batch, batch_scores = X[:BATCH].copy(), scores[:BATCH].copy()
    observe = [per_call_us(lambda: window.observe(batch, batch_scores), 2_000)
               for _ in range(args.repeats)]  # fmt: skip
    figures = [per_call_us(window.figures, 200) for _ in range(args.repeats)]
    result = {
        "batch": BATCH,
        "columns": COLUMNS,
        "distributions": 1 + TOP,
        "observe_us_per_batch": round(statistics.median(observe), 1),
        "observe_us_per_row": round(statistics.median(observe) / BATCH, 3),
        "figures_us": round(statistics.median(figures), 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    per_batch, per_row = result["observe_us_per_batch"], result["observe_us_per_row"]
    print(f"observe: {per_batch} µs per batch of {BATCH} ({per_row} µs a row); "
          f"figures: {result['figures_us']} µs")  # fmt: skip


if __name__ == "__main__":
    main()
