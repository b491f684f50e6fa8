"""Feature engine figures: online throughput beside the round-trip floor, state memory, backfill.

    python benchmarks/bench_features.py            # simulated history, embedded Valkey
    python benchmarks/bench_features.py --json     # the same figures as one JSON object

Online: a simulated history (the ``full`` profile: both channels, labels days later) replayed
in event-time order in batches of ``--batch``, twice: through one engine (each batch's read
sent behind the previous batch's write, `FeatureEngine.start` / `finish`, i.e. ``submit``),
then through one engine per customer partition with ``--streams`` batches in flight, so the
server serves one while the client computes another (see `replay`); every write confirmed
before the clock stops. ``--sync``: `FeatureEngine.compute_batch`, each write confirmed
before the next batch. Labels go ahead of the next batch's read, inside the timing.

The co-visitation neighbourhood of the history's first 30 days is loaded first (as
``features load-neighbours`` would), so the batches read and decode real sketches.

Beside it, the *floor*: the very same keys read (``MGET``) and commands written (``MULTI …
EXEC``) by sampled batches, replayed on another database with no feature work, which is what
any design doing this I/O one batch at a time would pay. Where the time goes: the client's
CPU (``time.process_time``) and the server's (``INFO cpu``: parsing, queueing, executing,
replying, feeding the AOF) over the replay, and the floor once more with the AOF off, which
is what durability costs. Every 7 simulated days the replay calls `FeatureEngine.sweep`
(untimed): it deletes the blocks whose TTL would have fired in real time. Memory: ``MEMORY
USAGE`` of every key, per active customer and per terminal, after 30 days and at the end.
Backfill: `backfill` over a Handbook-size history (5,000 customers, 10,000 terminals, 183
days), and the first-seen flags it computes (the online engine's, exactly) against exact
sets.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import redis

from fraudstream.features import FeatureEngine, backfill, default_feature_set
from fraudstream.features.neighbours import build_neighbourhood, load_neighbours
from fraudstream.features.wire import Wire
from fraudstream.schema import Label, Transaction
from fraudstream.valkey import EmbeddedValkey

TX_FIELDS = set(Transaction.__struct_fields__)
LABEL_FIELDS = set(Label.__struct_fields__)


def history(
    customers: int, terminals: int, days: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    try:
        from fraudstream.simulate import SimulationConfig, simulate
    except ImportError:
        from fraudstream.features.sample import synthetic_history

        tx, labels = synthetic_history(
            n_customers=customers, n_terminals=terminals, n_days=days, seed=seed
        )
        return tx, labels, "synthetic"
    config = SimulationConfig(
        n_customers=customers, n_terminals=terminals, n_days=days, profile="full", seed=seed
    )
    result = simulate(config)
    return result.transactions, result.labels, "simulator(full)"


def to_records(frame: pl.DataFrame, fields: set[str], kind: type[Any]) -> list[Any]:
    cols = [c for c in frame.columns if c in fields]
    rows = frame.select(cols).to_dicts()
    return [msgspec.convert({k: v for k, v in r.items() if v is not None}, kind) for r in rows]


def command_calls(client: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in client.info("commandstats").values())


def server_cpu(client: redis.Redis) -> float:
    """CPU seconds the server process has used (``INFO cpu``): parsing, queueing, executing,
    replying and feeding the AOF, which ``commandstats`` only partly sees."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def memory(client: redis.Redis, namespace: str) -> dict[str, float]:
    """Bytes per entity by kind (customer blob; all tile blocks and stamps of one terminal)."""
    per_kind: dict[str, int] = defaultdict(int)
    entities: dict[str, set[str]] = defaultdict(set)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=5000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, used in zip(keys, pipe.execute(), strict=True):
        tag = key.split(b"{", 1)[1].split(b"}", 1)[0].decode()
        kind = {"c": "customer", "t": "terminal", "k": "card", "d": "device", "i": "ip"}.get(
            tag.split(":", 1)[0], "other"
        )
        per_kind[kind] += int(used or 0)
        entities[kind].add(tag)
    out: dict[str, float] = {"keys": float(len(keys))}
    for kind, total in per_kind.items():
        out[f"{kind}_bytes_each"] = round(total / max(1, len(entities[kind])), 1)
        out[f"{kind}_entities"] = float(len(entities[kind]))
    out["used_memory_mb"] = round(int(client.info("memory")["used_memory"]) / 2**20, 1)
    return out


def floor(
    client: redis.Redis, samples: list[tuple[list[str], list[tuple[Any, ...]]]]
) -> tuple[float, float]:
    """(wall, server CPU) seconds per batch for the same I/O with no feature work, on
    database 1: the ``WATCH`` + ``MGET`` and the ``MULTI … EXEC`` the engine sent."""
    other = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **{**client.connection_pool.connection_kwargs, "db": 1}
        )
    )
    wire = Wire(other)
    cpu0 = server_cpu(client)
    started = time.perf_counter()
    with wire.session() as session:
        for keys, commands in samples:
            customers = sum(1 for c in commands if c[0] == "SET")
            session.run([("WATCH", *keys[:customers]), ("MGET", *keys)])
            session.run(commands, atomic=True)
    spent = (time.perf_counter() - started) / max(1, len(samples))
    cpu = (server_cpu(client) - cpu0) / max(1, len(samples))
    other.flushdb()
    other.close()
    return spent, cpu


def floor_without_aof(
    client: redis.Redis, samples: list[tuple[list[str], list[tuple[Any, ...]]]]
) -> tuple[float, float] | None:
    """The floor again with the AOF off: what durability costs (None if CONFIG is denied)."""
    try:
        before = str(client.config_get("appendonly")["appendonly"])
        client.config_set("appendonly", "no")
    except redis.ResponseError:
        return None
    try:
        return floor(client, samples)
    finally:
        client.config_set("appendonly", before)


@dataclass
class Replay:
    """What one replay of the history measured (seconds; labels in, sweeps out)."""

    streams: int
    transactions: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    commands: int = 0
    batches: int = 0
    swept: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[list[str], list[tuple[Any, ...]]]] = field(default_factory=list)
    memory_day30: dict[str, float] = field(default_factory=dict)
    memory_end: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        n, us = self.transactions, 1e6 / max(1, self.transactions)
        return {
            "streams": self.streams,
            "tx_per_s": round(n / self.wall),
            "us_per_tx": round(self.wall * us, 1),
            "client_cpu_us_per_tx": round(self.client_cpu * us, 1),
            "server_cpu_us_per_tx": round(self.server_cpu * us, 1),
            "server_commands_per_batch": round(self.commands / max(1, self.batches), 1),
            "client_phase_us_per_tx": {k: round(v * us, 1) for k, v in self.timings.items()},
        }


def replay(
    client: redis.Redis,
    txs: list[Transaction],
    labs: list[Label],
    args: argparse.Namespace,
    streams: int,
    *,
    observe: bool,
) -> Replay:
    """The history through ``streams`` engines, one per customer partition (CRC-32 of the
    customer id), batches taken in event-time order across partitions. Each engine keeps
    one batch in flight: the next partition's batch is started (`FeatureEngine.start`:
    its read sent) before this one is finished, so the server serves one while the client
    computes another; with one stream that is `FeatureEngine.submit`. ``--sync`` confirms
    every write before the next batch instead (`FeatureEngine.compute_batch`). Labels go
    ahead of the read of the batch they precede (timed: they are part of the online
    update).
    Every 7 simulated days the tile blocks whose TTL would have fired in real time are
    swept (``observe``: and memory is measured at day 30 and at the end), with nothing in
    flight and untimed."""
    out = Replay(streams, transactions=len(txs))
    engines = [
        FeatureEngine(client, default_feature_set(), clock=lambda: 4e9) for _ in range(streams)
    ]

    def partition(t: Transaction) -> int:
        return zlib.crc32(t.customer_id.encode()) % streams

    parts: list[list[Transaction]] = [[] for _ in range(streams)]
    for t in txs:
        parts[partition(t)].append(t)
    schedule = sorted(
        (part[i : i + args.batch] for part in parts for i in range(0, len(part), args.batch)),
        key=lambda batch: batch[0].timestamp,
    )
    inflight: deque[tuple[FeatureEngine, Any]] = deque()
    day0 = txs[0].timestamp.timestamp()
    next_sweep, day30 = day0 + 7 * 86400, day0 + 30 * 86400
    li = 0
    calls0, cpu0 = command_calls(client), server_cpu(client)
    wall0, proc0 = time.perf_counter(), time.process_time()
    untimed_wall = untimed_proc = untimed_server = 0.0

    def keep(engine: FeatureEngine) -> None:
        if engine.record_io and engine.last_io:
            out.samples.append(engine.last_io)
            engine.last_io = None

    def settle() -> None:
        while inflight:
            engine, run = inflight.popleft()
            engine.finish(run)
            keep(engine)
        for engine in engines:
            engine.confirm()

    for k, batch in enumerate(schedule):
        first = batch[0].timestamp
        due: list[Label] = []
        while li < len(labs) and labs[li].reported_at <= first:
            due.append(labs[li])
            li += 1
        sweep = first.timestamp() >= next_sweep
        snapshot = observe and not out.memory_day30 and first.timestamp() >= day30
        if sweep or snapshot:
            settle()
            w, c, sv = time.perf_counter(), time.process_time(), server_cpu(client)
            # What the blocks' TTLs do in real time; a replay outruns the wall clock.
            out.swept += engines[0].sweep()
            next_sweep += 7 * 86400 if sweep else 0
            if snapshot:
                out.memory_day30 = memory(client, engines[0].namespace)
            untimed_wall += time.perf_counter() - w
            untimed_proc += time.process_time() - c
            untimed_server += server_cpu(client) - sv
        engine = engines[partition(batch[0])]
        if args.sync:
            engine.record_io = k % 50 == 0  # the floor replays these batches' I/O
            engine.apply_labels(due)
            engine.compute_batch(batch)
            keep(engine)
            continue
        while any(e is engine for e, _ in inflight):  # one batch in flight per engine
            done, run = inflight.popleft()
            done.finish(run)
            keep(done)
        engine.record_io = k % 50 == 0
        inflight.append((engine, engine.start(batch, due)))  # labels ahead of its read
    settle()
    out.wall = time.perf_counter() - wall0 - untimed_wall
    out.client_cpu = time.process_time() - proc0 - untimed_proc
    out.server_cpu = server_cpu(client) - cpu0 - untimed_server
    out.commands, out.batches = command_calls(client) - calls0, len(schedule)
    for engine in engines:
        for phase, spent in engine.timings.items():
            out.timings[phase] = out.timings.get(phase, 0.0) + spent
        for name, value in vars(engine.stats).items():
            out.stats[name] = out.stats.get(name, 0) + value
    if observe:
        out.swept += engines[0].sweep()
        out.memory_end = memory(client, engines[0].namespace)
    return out


def online(client: redis.Redis, args: argparse.Namespace) -> dict[str, Any]:
    tx, labels, source = history(args.customers, args.terminals, args.days, args.seed)
    tx = tx.sort("timestamp", maintain_order=True)
    labels = labels.sort("reported_at", maintain_order=True)
    txs = to_records(tx, TX_FIELDS, Transaction)
    labs = to_records(labels, LABEL_FIELDS, Label)
    # The co-visitation neighbourhood of the first 30 days, loaded as a deployment would
    # (`features load-neighbours`), so the batches read and decode real records.
    first: datetime = tx["timestamp"].min()  # type: ignore[assignment]
    hood = build_neighbourhood(tx, first + timedelta(days=30), labels=labels)
    runs = []
    for streams in sorted({1, args.streams}):
        client.flushall()
        load_neighbours(client, hood)
        runs.append(replay(client, txs, labs, args, streams, observe=streams == 1))
    main = runs[0]
    samples = main.samples
    floor_s, floor_cpu = floor(client, samples)
    no_aof = floor_without_aof(client, samples)
    per_tx = 1e6 / args.batch
    return {
        "history": source,
        "transactions": len(txs),
        "labels": len(labs),
        "customers": args.customers,
        "days": args.days,
        "batch": args.batch,
        "features": len(default_feature_set().names),
        "mode": "compute_batch" if args.sync else "start/finish",
        "runs": [r.figures() for r in runs],
        "floor_tx_per_s": round(args.batch / floor_s),
        "floor_us_per_tx": round(floor_s * per_tx, 1),
        "floor_server_cpu_us_per_tx": round(floor_cpu * per_tx, 1),
        "floor_no_aof_us_per_tx": None if no_aof is None else round(no_aof[0] * per_tx, 1),
        "floor_no_aof_server_cpu_us_per_tx": (
            None if no_aof is None else round(no_aof[1] * per_tx, 1)
        ),
        "memory_day30": main.memory_day30,
        "swept_keys": main.swept,
        "memory_end": main.memory_end,
        "stats": main.stats,
    }


def offline(args: argparse.Namespace) -> dict[str, Any]:
    tx, labels, source = history(args.backfill_customers, args.backfill_customers * 2, 183, 1)
    started = time.perf_counter()
    features = backfill(tx, labels)
    spent = time.perf_counter() - started
    return {
        "history": source,
        "transactions": tx.height,
        "seconds": round(spent, 1),
        "tx_per_s": round(tx.height / spent),
        "columns": features.width - 1,
        "first_seen": first_seen_quality(tx, features),
    }


def first_seen_quality(tx: pl.DataFrame, features: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """The first-seen flags against exact sets over the whole history: ``fp_rate`` = share of
    truly new values read as seen (Bloom false positives), ``forgotten`` = share of values
    used before but read as new (aged out of both generations)."""
    out: dict[str, dict[str, Any]] = {}
    ordered = tx.with_row_index("_i").sort("timestamp", "_i")
    for spec in default_feature_set().first_seen:
        truth = ordered.select(
            "_i", (pl.int_range(pl.len()).over("customer_id", spec.field) == 0).alias("new")
        ).sort("_i")["new"]
        got = features[spec.name]
        has = got.is_not_null() & got.is_not_nan()
        new, flag = truth.filter(has), got.filter(has) == 1.0
        fp = int((new & ~flag).sum())
        forgotten = int((~new & flag).sum())
        out[spec.what] = {
            "configured": spec.fp_rate,
            "new": int(new.sum()),
            "fp_rate": round(fp / max(1, int(new.sum())), 5),
            "forgotten": round(forgotten / max(1, int((~new).sum())), 5),
            "state_bytes": 2 * spec.words * 8 + 4,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--terminals", type=int, default=4000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--streams",
        type=int,
        default=2,
        help="customer partitions kept in flight in the second run (the first: one)",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="time compute_batch (each write confirmed before the next batch) "
        "instead of submit (confirmed when the next batch starts)",
    )
    parser.add_argument("--backfill-customers", type=int, default=5000)
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--url", default="", help="an external server (default: embedded)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.url:
            client = redis.Redis.from_url(args.url)
        else:
            server = EmbeddedValkey(Path(tmp))
            info = server.ensure()
            client = redis.Redis(host=info.host, port=info.port, password=info.password)
        try:
            client.flushall()
            client.config_resetstat()
            result: dict[str, Any] = {"online": online(client, args)}
        finally:
            client.close()
            if server is not None:
                server.stop()
    if not args.skip_backfill:
        result["backfill"] = offline(args)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    report(result)


def report(result: dict[str, Any]) -> None:
    o = result["online"]
    print(
        f"online  {o['history']}: {o['transactions']:,} tx, {o['customers']:,} customers, "
        f"{o['days']} days, batches of {o['batch']}, {o['features']} features"
    )
    for r in o["runs"]:
        sync = o["mode"] == "compute_batch"
        how = "one partition" if r["streams"] == 1 else f"{r['streams']} partitions"
        how += ", one batch at a time" if sync else ("" if r["streams"] == 1 else " in flight")
        print(
            f"  engine        {r['tx_per_s']:>9,} tx/s   {r['us_per_tx']:>6} µs/tx   "
            f"({how}, {o['mode']}; every write confirmed)"
        )
        print(
            f"    CPU µs/tx   client {r['client_cpu_us_per_tx']}   server "
            f"{r['server_cpu_us_per_tx']}   {r['server_commands_per_batch']} commands/batch"
        )
        phases = "  ".join(f"{k} {v}" for k, v in r["client_phase_us_per_tx"].items())
        print(f"    phases      {phases}   (wall µs/tx, summed over engines)")
    print(
        f"  I/O floor     {o['floor_tx_per_s']:>9,} tx/s   {o['floor_us_per_tx']:>6} µs/tx"
        "   (same MGET + MULTI/EXEC, no feature work)"
    )
    if o["floor_no_aof_us_per_tx"] is not None:
        print(
            f"  floor, no AOF {round(1e6 / o['floor_no_aof_us_per_tx']):>9,}"
            f" tx/s   {o['floor_no_aof_us_per_tx']:>6} µs/tx   (what durability costs)"
        )
    print(
        f"  floor CPU     server {o['floor_server_cpu_us_per_tx']} µs/tx, without AOF "
        f"{o['floor_no_aof_server_cpu_us_per_tx']}"
    )
    how = "applied before" if o["mode"] == "compute_batch" else "sent ahead of the read of"
    print(f"  labels        {o['labels']:,}, each {how} the next batch (timed)")
    for when in ("memory_day30", "memory_end"):
        m = o[when]
        print(
            f"  {when:<13} customer {m.get('customer_bytes_each', 0):,.0f} B  "
            f"terminal {m.get('terminal_bytes_each', 0):,.0f} B  "
            f"card {m.get('card_bytes_each', 0):,.0f} B  ip {m.get('ip_bytes_each', 0):,.0f} B  "
            f"device {m.get('device_bytes_each', 0):,.0f} B  used {m.get('used_memory_mb')} MB"
        )
    if "backfill" in result:
        b = result["backfill"]
        print(
            f"backfill {b['history']}: {b['transactions']:,} tx in {b['seconds']} s "
            f"({b['tx_per_s']:,} tx/s), {b['columns']} features"
        )
        for what, q in b.get("first_seen", {}).items():
            print(
                f"  first seen {what:<17} false positives {q['fp_rate']:.3%} of "
                f"{q['new']:,} new (configured < {q['configured']:.0%}), forgotten "
                f"{q['forgotten']:.3%}, {q['state_bytes']} B per customer"
            )


if __name__ == "__main__":
    main()
