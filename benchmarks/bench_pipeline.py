"""Producer and worker throughput on a fresh embedded Valkey (temp dir, AOF everysec).

Run: ``python benchmarks/bench_pipeline.py [--n 100000] [--json]``. Figures: pipelined XADD
of simulated transactions, pre-encoded (producer), then one in-process worker draining them
(read, decode, score, MULTI{XADD decisions, XACK, XDEL}) with the amount policy alone and with
every stage (online features, default rules, policy). Median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import redis

from fraudstream.config import Settings
from fraudstream.generate import GenerateOptions, encode_rows, load_history, select
from fraudstream.scoring import AmountPolicy, Scorer, build_scorer
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions
from fraudstream.valkey import EmbeddedValkey

HISTORY, _ = load_history(None, seed=1)
POLICY = AmountPolicy(review_amount=220, block_amount=5000, review_score=500, block_score=800)


def one_run(
    client: redis.Redis, url: str, n: int, partitions: int, batch: int
) -> tuple[float, float, float]:
    """Producer rate, then one worker with the amount policy only, then with every stage."""
    return (
        *_worker_run(client, n, partitions, batch, None),
        _worker_run(client, n, partitions, batch, url)[1],
    )


def _worker_run(
    client: redis.Redis, n: int, partitions: int, batch: int, full_url: str | None
) -> tuple[float, float]:
    client.flushall()
    keys = StreamKeys("bench", partitions)
    picked = select(HISTORY, n, GenerateOptions(run_id="bench"))
    entries = [(s, b) for _, s, b in encode_rows(picked, HISTORY.head(0), keys, False, batch)]
    t0 = time.perf_counter()
    Producer(client, keys, batch_size=batch).send_to_streams(entries)
    produce_s = time.perf_counter() - t0
    worker = Worker(
        client,
        keys,
        build_scorer(Settings(valkey_url=full_url), client) if full_url else Scorer(POLICY),
        WorkerOptions(batch_size=batch, block_ms=10, lease_ttl_ms=60_000),
    )
    t0 = time.perf_counter()
    stats = worker.run(burst=True, handle_signals=False)
    work_s = time.perf_counter() - t0
    assert stats.processed == n, stats
    return n / produce_s, n / work_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp))
        info = server.ensure()
        try:
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
            url = f"redis://:{info.password}@{info.host}:{info.port}/0"
            runs = [
                one_run(client, url, args.n, args.partitions, args.batch)
                for _ in range(args.repeat)
            ]
        finally:
            server.stop()
    result = {
        "n": args.n,
        "batch": args.batch,
        "partitions": args.partitions,
        "produce_tps": round(statistics.median(r[0] for r in runs)),
        "worker_tps": round(statistics.median(r[1] for r in runs)),
        "worker_full_tps": round(statistics.median(r[2] for r in runs)),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{args.n:,} transactions, batches of {args.batch}, {args.partitions} partitions, "
        f"median of {args.repeat}:"
    )
    print(f"  producer (pipelined XADD, one blob per entry)  {result['produce_tps']:>9,} tx/s")
    print(f"  one worker, amount policy only                  {result['worker_tps']:>9,} tx/s")
    print(f"  one worker, features + default rules + policy   {result['worker_full_tps']:>9,} tx/s")


if __name__ == "__main__":
    main()
