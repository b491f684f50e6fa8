"""What one call of `Scorer.score_batch` costs, per stage, from 1 to 500 transactions.

Run: ``python benchmarks/bench_batch_cost.py [--repeat 3] [--json] [--profile]``. A worker's
scorer (`build_scorer`: online features, the default rules, a model active — trained once
on a small simulated history, as `fraudstream demo` does) on an embedded Valkey (temp dir,
AOF everysec). Its customers are first warmed with ``--warm`` transactions, then batches of
1, 10, 100 and 500 fresh transactions (later in event time, same customers) are scored,
one after the other. Per batch size, in ms per call (medians): its wall time, its CPU time
in this process (the part of the cost that is ours: the machine is shared, and the wall time
also waits for the server), and each stage as the decisions report it (``features``: read,
compute, write confirmed; ``model``: scores and reason codes; ``rules``: the list lookups
and the registries' pointers, evaluation, policy). A batch of one is what bounds end-to-end
latency at low rates and an API request scored alone. (`run_all.py` shows these figures.)

``--profile``: cProfile of ``--profile-calls`` batches of one, the top functions by
cumulative time, on stderr. ``--url`` and ``--data-dir``: an external server and data
folder (a model already active there is reused: side-by-side runs train once).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from fraudstream.config import Settings
from fraudstream.demo import DemoRun
from fraudstream.generate import GenerateOptions, encode_rows, load_history, select
from fraudstream.schema import Transaction, decode_transaction
from fraudstream.scoring import Scorer, build_scorer
from fraudstream.stream.keys import StreamKeys
from fraudstream.valkey import EmbeddedValkey
from summary import Figure, Progress, report

SIZES = (1, 10, 100, 500)
STAGES = ("features", "model", "rules")


def calls_for(size: int) -> int:
    """Calls per batch size: enough for a stable median, ~5,000 transactions at most."""
    return max(10, min(300, 5_000 // size))


def transactions(n: int) -> list[Transaction]:
    """``n`` transactions of the demo's small world in event-time order, customers renamed
    for this run (fresh feature state)."""
    world = load_history(None, seed=1)[0]
    picked = select(world, n, GenerateOptions(run_id=uuid.uuid4().hex[:8], isolate=True))
    rows = encode_rows(picked, world.head(0), StreamKeys("bench", 1), False, 500)
    return [decode_transaction(payload) for _, _, payload in rows]


def timed(scorer: Scorer, batch: list[Transaction]) -> dict[str, float]:
    """One call: its wall time, this process's CPU time, and its stages, ms."""
    t0, c0 = time.perf_counter(), time.process_time()
    decisions = scorer.score_batch(batch)
    cpu = (time.process_time() - c0) * 1000
    wall = (time.perf_counter() - t0) * 1000
    return {"wall": wall, "cpu": cpu, **{s: decisions[0].stages[s] for s in STAGES}}


def measure(scorer: Scorer, txs: list[Transaction], warm: int) -> dict[int, dict[str, float]]:
    """Median ms per call of each stage, per batch size (``txs`` consumed in order)."""
    for lo in range(0, warm, 500):
        scorer.score_batch(txs[lo : min(lo + 500, warm)])
    at = warm
    out: dict[int, dict[str, float]] = {}
    for size in SIZES:
        runs = []
        for _ in range(calls_for(size)):
            runs.append(timed(scorer, txs[at : at + size]))
            at += size
        out[size] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return out


def per_repeat(warm: int) -> int:
    """Transactions one repeat consumes."""
    return warm + sum(size * calls_for(size) for size in SIZES)


def profile(scorer: Scorer, txs: list[Transaction], calls: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for tx in txs[:calls]:
        scorer.score_batch([tx])
    prof.disable()
    stats = pstats.Stats(prof, stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)


@contextmanager
def server(url: str, tmp: Path) -> Iterator[tuple[redis.Redis, str]]:
    if url:
        yield redis.Redis.from_url(url), url
        return
    embedded = EmbeddedValkey(tmp / "valkey")
    info = embedded.ensure()
    try:
        client = redis.Redis(host=info.host, port=info.port, password=info.password)
        yield client, f"redis://:{info.password}@{info.host}:{info.port}/0"
    finally:
        embedded.stop()


def figures(results: list[dict[int, dict[str, float]]]) -> list[Figure]:
    out = []
    for size in SIZES:
        runs = [r[size] for r in results]
        tx = "transaction" if size == 1 else "transactions"
        out.append(Figure(f"score_batch of {size} {tx}, wall", "ms", [r["wall"] for r in runs]))
        what = f"score_batch of {size} {tx}, client CPU"
        out.append(Figure(what, "ms", [r["cpu"] for r in runs]))
        for stage in STAGES:
            what = f"score_batch of {size} {tx}, {stage}"
            out.append(Figure(what, "ms", [r[stage] for r in runs]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warm", type=int, default=5_000, help="transactions before timing")
    parser.add_argument("--profile", action="store_true", help="cProfile batches of one")
    parser.add_argument("--profile-calls", type=int, default=300)
    parser.add_argument("--url", default="", help="an external server (default: embedded)")
    parser.add_argument("--data-dir", default="", help="its data folder (registry key)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    say = Progress("batch cost")
    with tempfile.TemporaryDirectory() as tmp, server(args.url, Path(tmp)) as (client, url):
        data = args.data_dir or str(Path(tmp) / "data")
        settings = Settings(valkey_url=url, data_dir=data)
        DemoRun(settings, client, workers=1, tps=1, duration=1, bad_ratio=0, seed=0).ensure_model()
        scorer = build_scorer(settings, client)
        say("model ready, scorer built")
        chunk = per_repeat(args.warm)
        txs = transactions(chunk * args.repeat + args.profile_calls)
        say(f"{len(txs):,} transactions")
        results = []
        for r in range(args.repeat):
            results.append(measure(scorer, txs[r * chunk : (r + 1) * chunk], args.warm))
            say(f"repeat {r + 1}")
        if args.profile:
            profile(scorer, txs[-args.profile_calls :], args.profile_calls)
    report(figures(results), f"score_batch cost, {args.repeat} repeats", args.json)


if __name__ == "__main__":
    main()
