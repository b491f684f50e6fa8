"""Unthrottled `fraudstream generate` into a fresh embedded Valkey (AOF everysec).

Run: ``python benchmarks/bench_generate.py [--n 300000] [--json]``. Times the send only (the
simulated history is prepared first), median of ``--repeat`` runs; the target is >= 20,000 tx/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import redis

from fraudstream.generate import GenerateOptions, encode_rows, load_history, run, select
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.valkey import EmbeddedValkey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keys = StreamKeys("bench", 16)
    transactions, labels = load_history(None, seed=1)
    options = GenerateOptions(tps=0, duration=600, run_id="bench")
    rows = encode_rows(select(transactions, args.n, options), labels, keys, False, 500)
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedValkey(Path(tmp))
        info = server.ensure()
        try:
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
            for _ in range(args.repeat):
                client.flushall()
                stats = run(Producer(client, keys), rows, options)
                assert stats.sent == args.n
                rates.append(stats.achieved_tps)
        finally:
            server.stop()
    result = {
        "n": args.n,
        "generate_tps": round(statistics.median(rates)),
        "runs": [round(r) for r in rates],
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"generate, unthrottled, {args.n:,} simulated transactions, median of {args.repeat}: "
        f"{result['generate_tps']:,} tx/s (target >= 20,000)"
    )


if __name__ == "__main__":
    main()
