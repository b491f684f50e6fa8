"""The pipeline's throughput on one Valkey node against a three-node Valkey Cluster.

Run: ``python benchmarks/bench_cluster.py [--n 20000] [--workers 2,4] [--repeat 2] [--json]``
(~2 minutes on 2 cores with the defaults; not part of ``make bench``). For each server (a
fresh embedded node, then a fresh 3-primary `LocalCluster`, both in a temp dir, AOF
everysec) and each number of worker processes: ``--n`` simulated transactions are written
to the 16 input partitions, then ``fraudstream worker --processes W --burst`` drains them
(features on, the amount policy deciding: no model is trained). Throughput is counted from
the first decision to the last (the decisions stream's entry ids carry the server's time),
so process start-up is left out. The ratios compare the cluster with one node at the same
worker count.

On one host every node shares the same cores as the workers: the cluster adds round trips
(a fence per partition, then a relay, where one node runs one MULTI) and spreads no load
to other machines, so this measures the cluster's overhead, not its scaling (see
docs/operations.md, "Cluster").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_pipeline import _ms, bench_entries
from fraudstream.cluster import LocalCluster
from fraudstream.config import Settings, to_environ
from fraudstream.stream.keys import StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.valkey import EmbeddedValkey, connect
from summary import Figure, Progress, report

PARTITIONS = 16


def drain_tps(settings: Settings, workers: int, n: int, run_id: str) -> float:
    """Fill the backlog, drain it with ``workers`` processes in burst mode; tx/s."""
    client = connect(settings)
    keys = StreamKeys.of(settings)
    entries = bench_entries(keys, n, settings.batch_size, run_id)
    last: Any = client.xrevrange(keys.decisions, count=1)
    before = client.xlen(keys.decisions)
    Producer(client, keys, batch_size=settings.batch_size).send_to_streams(entries)
    command = [sys.executable, "-m", "fraudstream", "worker", "--burst", "--quiet"]
    subprocess.run(
        [*command, "--processes", str(workers)],
        env={**os.environ, **to_environ(settings)},
        check=True,
        timeout=600,
    )
    assert client.xlen(keys.decisions) == before + n, "not every transaction was decided"
    start = last[0][0] if last else b"0-0"
    first: Any = client.xrange(keys.decisions, min=b"(" + start, count=1)
    end: Any = client.xrevrange(keys.decisions, count=1)
    client.close()
    return n / max(_ms(end[0][0]) - _ms(first[0][0]), 1) * 1000


def measure(args: argparse.Namespace, tmp: Path) -> list[Figure]:
    say = Progress("cluster")
    runs: dict[tuple[str, int], list[float]] = {}
    for where in ("node", "cluster"):
        with _server(where, tmp) as url:
            settings = Settings(data_dir=str(tmp / "data"), valkey_url=url, partitions=PARTITIONS)
            for r in range(args.repeat):
                for w in args.workers:
                    tps = drain_tps(settings, w, args.n, f"{where}{w}r{r}")
                    runs.setdefault((where, w), []).append(tps)
                    say(f"{where}, {w} workers: {tps:,.0f} tx/s")
    return _figures(runs, args.workers)


def _figures(runs: dict[tuple[str, int], list[float]], workers: list[int]) -> list[Figure]:
    out = []
    for w in workers:
        node, cluster = runs[("node", w)], runs[("cluster", w)]
        out.append(Figure(f"one node, {w} worker processes", "tx/s", node))
        out.append(Figure(f"3-node cluster, {w} worker processes", "tx/s", cluster))
        ratio = [c / n for c, n in zip(cluster, node, strict=True)]
        out.append(Figure(f"cluster / one node, {w} workers", "×", ratio))
    return out


class _server:
    """A fresh embedded node or a fresh 3-primary cluster under ``tmp``: its URL."""

    def __init__(self, where: str, tmp: Path) -> None:
        self.where = where
        self.node = EmbeddedValkey(tmp / "node")
        self.cluster = LocalCluster(tmp / "cluster")

    def __enter__(self) -> str:
        if self.where == "cluster":
            self.cluster.up(3, 0)
            return self.cluster.url(show_password=True)
        info = self.node.ensure()
        return f"redis://:{info.password}@{info.host}:{info.port}/0"

    def __exit__(self, *_: object) -> None:
        if self.where == "cluster":
            self.cluster.down(purge=True)
        else:
            self.node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument(
        "--workers",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[2, 4],
        help="worker process counts, each measured on both servers",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, Path(tmp))
    title = f"pipeline on one node vs a 3-node cluster, {PARTITIONS} partitions, burst"
    report(figures, f"{title}, {args.repeat} repeats", args.json, n=args.n)


if __name__ == "__main__":
    main()
