"""One load test: simulated traffic at a pattern, worker processes, and the follower of
``tx.decisions`` that measures every decision of the run.

The pieces are the demo's: `fraudstream.generate` prepares and paces the traffic (ids
prefixed by the run id, entities too, so each run starts from fresh feature state), the
workers are ``fraudstream worker --processes P`` (the supervisor) in their own session, and
the follower reads decisions and dead letters after the ids they had when the run started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import redis

from fraudstream.config import Settings
from fraudstream.errors import ConfigError
from fraudstream.generate import GenerateOptions, pacer, prepare_traffic
from fraudstream.loadtest.patterns import shape_for
from fraudstream.loadtest.record import RunRecord
from fraudstream.loadtest.stats import RunStats, Snapshot
from fraudstream.schema import decode_decision
from fraudstream.simulate.patterns import Pattern, RateCurve
from fraudstream.simulate.traffic import Pacer
from fraudstream.stream.fleet import last_id, spawn_worker, stop_all, wait_for_partitions
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer

MAX_RUN_ID = 64


@dataclass(frozen=True)
class LoadTestOptions:
    run_id: str
    tps: float
    duration: float
    pattern: Pattern = "constant"
    processes: int = 1
    seed: int = 0
    drain_s: float = 30.0
    """After the last send, how long to wait for the decisions still in flight."""
    tick_s: float = 0.5
    """How often `LoadTest.run` calls ``on_tick``."""

    def __post_init__(self) -> None:
        if not self.tps > 0:
            raise ConfigError("tps", f"must be > 0, got {self.tps:g}")
        if not self.duration > 0:
            raise ConfigError("duration", f"must be > 0, got {self.duration:g}")
        if self.processes < 1:
            raise ConfigError("processes", f"must be >= 1, got {self.processes}")
        if len(self.run_id) > MAX_RUN_ID:
            raise ConfigError("run_id", f"must be at most {MAX_RUN_ID} characters")

    def generate(self, batch_size: int) -> GenerateOptions:
        return GenerateOptions(
            tps=self.tps,
            duration=self.duration,
            pattern=self.pattern,
            run_id=self.run_id,
            isolate=True,
            seed=self.seed,
            batch_size=batch_size,
            shape=shape_for(self.duration),
        )


class LoadTest:
    """Runs once; `stop` (from a signal handler) ends the sending and, a second time, the
    waiting for decisions in flight."""

    def __init__(self, settings: Settings, client: redis.Redis, options: LoadTestOptions) -> None:
        self.settings, self.client, self.options = settings, client, options
        self.keys = StreamKeys.of(settings)
        self.generate = options.generate(settings.batch_size)
        self.prefix = options.run_id + "-"
        self.stops = 0
        self._pacer: Pacer[Any] | None = None

    def stop(self) -> None:
        self.stops += 1
        if self._pacer is not None:
            self._pacer.stop()

    def run(self, on_tick: Callable[[Snapshot], None] | None = None) -> RunRecord:
        """Start the workers, prepare the traffic, send and follow; the workers are stopped
        whatever happens.

        Raises:
            StreamError: the workers did not start.
        """
        workers = spawn_worker(self.settings, self.options.processes, new_session=True)
        try:  # the traffic is prepared while the workers start
            picked, rows = prepare_traffic(self.generate, self.keys)
            frauds = set(picked.filter(pl.col("is_fraud"))["transaction_id"].to_list())
            streams = (self.keys.decisions, self.keys.deadletter)
            after = {s: last_id(self.client, s) for s in streams}
            wait_for_partitions(self.client, self.keys, self.options.processes, [workers], 120.0)
            stats, status = self._send_and_follow(rows, frauds, after, workers, on_tick)
        finally:
            stop_all([workers])
        frauds_sent = int(picked.head(stats.sent)["is_fraud"].sum())
        return stats.record(
            self.options.run_id, self.options.processes, status, frauds_sent, time.time()
        )

    def _send_and_follow(
        self,
        rows: list[Any],
        frauds: set[str],
        after: dict[str, bytes],
        workers: Any,
        on_tick: Callable[[Snapshot], None] | None,
    ) -> tuple[RunStats, str]:
        o = self.options
        curve = RateCurve(o.pattern, o.tps, o.duration, o.seed, self.generate.shape)
        stats = RunStats(curve, o.duration, time.time())
        producer = Producer(self.client, self.keys, batch_size=self.settings.batch_size)
        self._pacer = pacer(producer, self.generate, stats.sent_until, progress_every=0.0)
        t0 = time.monotonic()
        sender = threading.Thread(target=self._pacer.run, args=(rows,), daemon=True)
        sender.start()
        next_tick, drain_until = 0.0, float("inf")
        while True:
            if self.stops:  # again: a stop before the pacer started is not lost
                self._pacer.stop()
            self._read(after, stats, frauds)
            now = time.monotonic() - t0
            if on_tick is not None and now >= next_tick:
                on_tick(stats.snapshot(now))
                next_tick = now + o.tick_s
            if workers.poll() is not None:
                self.stop()
                return stats, "incomplete"
            if sender.is_alive():
                continue
            if stats.decided + stats.dead_letters >= stats.sent:
                return stats, "interrupted" if self.stops else "completed"
            drain_until = min(drain_until, now + (5.0 if self.stops else o.drain_s))
            if self.stops > 1 or now > drain_until:
                return stats, "incomplete"

    def _read(self, after: dict[str, bytes], stats: RunStats, frauds: set[str]) -> None:
        reply: Any = self.client.xread(after, count=5000, block=100)  # type: ignore[arg-type]
        dead_mark = self.prefix.encode()
        for stream, messages in reply or []:
            name = stream.decode()
            for entry_id, fields in messages:
                after[name] = entry_id
                if name == self.keys.deadletter:
                    if dead_mark in fields.get(b"payload", b""):
                        stats.add_dead_letter()
                    continue
                decision = decode_decision(fields[PAYLOAD])
                if decision.transaction_id.startswith(self.prefix):
                    stats.add(decision, decision.transaction_id in frauds)
