"""The pipeline's throughput and latency on a fresh embedded Valkey (temp dir, AOF everysec).

Run: ``python benchmarks/bench_pipeline.py [--n 50000] [--repeat 3] [--json]``. Figures, each
over ``--repeat`` runs:

- in this process: pipelined XADD of simulated transactions, pre-encoded (producer), then one
  `Worker` draining them (read, decode, score, MULTI{XADD decisions, XACK, XDEL}) with the
  amount policy alone and with every stage (online features, default rules, policy);
- the stream floor (`streamfloor`): the same payloads through XREADGROUP → XADD/XACK/XDEL
  with no scoring, by one and by two processes;
- ``fraudstream worker`` processes (1, then 2) as users run them, with each number of
  ``--lanes`` (default: the setting's), a model active (trained once on a small simulated
  history, as `fraudstream demo` does): started and holding their partitions, then
  ``--process-n`` transactions are sent at once; tx/s from the first decision to the last
  (the decisions stream's entry ids carry the server's time). The transactions are the
  simulated world's after its first 30 days went through the features (`traffic.WarmWorld`):
  ~3 % are flagged and explained, as in a running deployment, where every customer new
  flagged ~24 % (the table gives the share);
- end-to-end latency with 2 worker processes at a fixed offered rate (``fraudstream demo``'s
  run, `DemoRun`, with its sink and alerts consumer): from the moment Valkey stored a
  transaction to its decision; on a second fresh server, as the demo runs
  (`_latency_figures`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import redis

from fraudstream.config import Settings
from fraudstream.demo import DemoRun
from fraudstream.gcpolicy import freeze_startup
from fraudstream.generate import GenerateOptions, encode_rows, select
from fraudstream.scoring import AmountPolicy, Scorer, build_scorer
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions
from fraudstream.valkey import EmbeddedValkey
from streamfloor import floor_tps
from summary import Figure, Progress, Target, report
from traffic import WARM_DAYS, WarmWorld, world

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
    entries = bench_entries(keys, n, batch, "bench")
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


def bench_entries(keys: StreamKeys, n: int, batch: int, run_id: str) -> list[tuple[str, bytes]]:
    """``n`` encoded transactions (stream, payload); ids and entities prefixed by ``run_id``,
    so a run starts from fresh feature state: every customer new (`traffic.WarmWorld` gives
    them history)."""
    picked = select(world(), n, GenerateOptions(run_id=run_id, isolate=True))
    return [(s, b) for _, s, b in encode_rows(picked, picked.head(0), keys, False, batch)]


class OnRunningWorkers(DemoRun):
    """A demo run (fixed offered rate, latencies) on worker processes already running."""

    def _start_workers(self) -> None:
        pass

    def _stop_workers(self) -> None:
        pass


BATCH = 500
"""Transactions per producer pipeline (the settings' batch size, as `fraudstream produce`)."""
WARM_UP = 2_000
"""Transactions each set of worker processes decides before it is measured."""


@contextmanager
def worker_processes(
    settings: Settings, client: redis.Redis, workers: int, traffic: WarmWorld | None = None
) -> Iterator[None]:
    """``workers`` ``fraudstream worker`` processes, holding their partitions and warmed up
    (their first batches compile and load what they need), on `WARM_UP` transactions of
    ``traffic`` (default: a cold world of their own)."""
    run = DemoRun(settings, client, workers=workers, tps=1, duration=1, bad_ratio=0, seed=0)
    run._start_workers()
    try:
        run._wait_for_workers(timeout=180)
        keys = StreamKeys(settings.stream_prefix, settings.partitions)
        if traffic is None:
            warm = bench_entries(keys, WARM_UP, BATCH, f"w{workers}warm")
        else:
            warm = traffic.entries(keys, WARM_UP, BATCH)
        drain_tps(client, keys, warm)
        yield
    finally:
        run._stop_workers()


def drain_tps(client: redis.Redis, keys: StreamKeys, entries: list[tuple[str, bytes]]) -> float:
    """``entries`` sent at once (in batches of `BATCH`); tx/s from the first decision to the
    last."""
    n = len(entries)
    before = client.xlen(keys.decisions)
    last: Any = client.xrevrange(keys.decisions, count=1)
    Producer(client, keys, batch_size=BATCH).send_to_streams(entries)
    deadline = time.monotonic() + 300
    while client.xlen(keys.decisions) < before + n:
        assert time.monotonic() < deadline, "the workers did not decide in time"
        time.sleep(0.05)
    start = last[0][0] if last else b"0-0"
    first: Any = client.xrange(keys.decisions, min=b"(" + start, count=1)
    end: Any = client.xrevrange(keys.decisions, count=1)
    return n / max(_ms(end[0][0]) - _ms(first[0][0]), 1) * 1000


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def latencies(
    settings: Settings, client: redis.Redis, tps: float, duration: float, repeat: int
) -> dict[str, list[float]]:
    """p50/p95/p99 end-to-end latency (ms) of ``repeat`` demo runs at ``tps`` offered, on
    the 2 worker processes running."""
    out: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
    for r in range(repeat):
        run = OnRunningWorkers(
            settings, client, workers=2, tps=tps, duration=duration, bad_ratio=0, seed=10 + r
        )
        report = run.run()
        for q in (50, 95, 99):
            out[f"p{q}"].append(report.percentile(q))
    return out


def measure(args: argparse.Namespace, tmp: Path) -> list[Figure]:
    figures = on_server(tmp / "valkey", lambda client, url: _figures(args, client, url, tmp))
    if not args.only_processes:
        figures += on_server(
            tmp / "valkey-latency", lambda client, url: _latency_figures(args, client, url, tmp)
        )
    return figures


def on_server(where: Path, measure: Callable[[redis.Redis, str], list[Figure]]) -> list[Figure]:
    """``measure`` on a fresh embedded Valkey in ``where``."""
    server = EmbeddedValkey(where)
    info = server.ensure()
    try:
        client = redis.Redis(host=info.host, port=info.port, password=info.password)
        url = f"redis://:{info.password}@{info.host}:{info.port}/0"
        return measure(client, url)
    finally:
        server.stop()


def _settings(args: argparse.Namespace, client: redis.Redis, url: str, data: Path) -> Settings:
    settings = Settings(valkey_url=url, data_dir=str(data), partitions=args.partitions)
    DemoRun(settings, client, workers=1, tps=1, duration=1, bad_ratio=0, seed=0).ensure_model()
    return settings


def _figures(args: argparse.Namespace, client: redis.Redis, url: str, tmp: Path) -> list[Figure]:
    say = Progress("pipeline")
    figures = [] if args.only_processes else _in_process(args, client, url, say)
    client.flushall()
    settings = _settings(args, client, url, tmp / "data")
    say("model trained and activated")
    rounds = range(args.repeat)
    runs = len(args.lanes) * 2 * (WARM_UP + args.repeat * args.process_n)
    traffic = WarmWorld(settings, client, runs, "bench")
    say(f"{WARM_DAYS} days of history through the features, {runs:,} transactions ready")
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    decided = client.xlen(keys.decisions)
    for workers, target in ((1, None), (2, Target(">=", 12_000))):
        for lanes in args.lanes:
            laned = msgspec.structs.replace(settings, lanes=lanes)
            with worker_processes(laned, client, workers, traffic):
                tps = [
                    drain_tps(
                        client, keys, traffic.entries(keys, args.process_n, settings.batch_size)
                    )
                    for _ in rounds
                ]
                what = f"pipeline, {workers} worker process(es), {lanes} lane(s), model + features"
                figures.append(Figure(f"{what} + rules", "tx/s", tps, target))
                say(f"{workers} worker process(es), {lanes} lane(s)")
    share = flagged_share(client, keys, client.xlen(keys.decisions) - decided)
    figures.append(Figure("share of the decisions flagged (review or block)", "%", [share]))
    return figures


def flagged_share(client: redis.Redis, keys: StreamKeys, last: int) -> float:
    """Per cent of the ``last`` decisions (at most the latest 20,000) not approved."""
    entries: Any = client.xrevrange(keys.decisions, count=min(last, 20_000))
    flagged = [b'"outcome":"approve"' not in fields[PAYLOAD] for _, fields in entries]
    return 100.0 * sum(flagged) / max(len(flagged), 1)


def _latency_figures(
    args: argparse.Namespace, client: redis.Redis, url: str, tmp: Path
) -> list[Figure]:
    """On a server of its own, as `fraudstream demo` runs: after the throughput runs the
    first one held hundreds of MB and a ~1 GB AOF, whose rewrite (a fork writing the
    dataset) fell inside these runs and measured that instead."""
    say = Progress("pipeline")
    settings = _settings(args, client, url, tmp / "data-latency")
    laned = msgspec.structs.replace(settings, lanes=args.lanes[-1])
    with worker_processes(laned, client, 2):
        freeze_startup()  # this process produces: as `fraudstream demo` does
        return _latencies(laned, client, args, say)


def _in_process(
    args: argparse.Namespace, client: redis.Redis, url: str, say: Progress
) -> list[Figure]:
    """The producer and one `Worker` in this process, then the stream floor."""
    runs = [one_run(client, url, args.n, args.partitions, args.batch) for _ in range(args.repeat)]
    say("producer and Worker in process")
    figures = [
        Figure("producer, pipelined XADD (in process)", "tx/s", [r[0] for r in runs]),
        Figure("one Worker, amount policy only (in process)", "tx/s", [r[1] for r in runs]),
        Figure("one Worker, features + rules + policy (in process)", "tx/s", [r[2] for r in runs]),
    ]
    keys = StreamKeys("bench", args.partitions)
    entries = bench_entries(keys, args.n, args.batch, "floor")
    for consumers in (1, 2):
        floor = [
            floor_tps(client, url, keys, entries, consumers=consumers, batch=args.batch)
            for _ in range(args.repeat)
        ]
        what = f"stream floor: XREADGROUP → XADD/XACK/XDEL, {consumers} process(es), no scoring"
        figures.append(Figure(what, "tx/s", floor))
        say(f"stream floor, {consumers} process(es)")
    return figures


def _latencies(
    settings: Settings, client: redis.Redis, args: argparse.Namespace, say: Progress
) -> list[Figure]:
    figures = []
    for rate, p99 in ((2_000, 20.0), (5_000, 50.0)):
        lat = latencies(settings, client, rate, args.duration, args.repeat)
        for q in ("p50", "p95", "p99"):
            target = Target("<", p99) if q == "p99" else None
            what = f"pipeline latency {q} at {rate:,} tx/s offered, 2 workers"
            figures.append(Figure(what, "ms", lat[q], target))
        say(f"latency at {rate:,} tx/s")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--process-n", type=int, default=60_000)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per latency run")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--lanes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[Settings().lanes],
        help="lanes per worker process, each measured (e.g. 1,2; latency: the last)",
    )
    parser.add_argument(
        "--only-processes",
        action="store_true",
        help="only the worker processes' throughput (no in-process, floor or latency runs)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args, Path(tmp))
    title = f"pipeline, batches of {args.batch}, {args.partitions} partitions"
    report(figures, f"{title}, {args.repeat} repeats", args.json, n=args.n)


if __name__ == "__main__":
    main()
