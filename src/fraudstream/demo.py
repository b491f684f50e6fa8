"""`fraudstream demo`: the whole path on one laptop, measured.

Starts (or reuses) the embedded Valkey, runs worker processes, the SQL sink (decisions and
transactions into the configured store, SQLite in the data dir by default) and the alerts
consumer (every block and every step-up's code by signed webhook to a local receiver the
demo starts), sends simulated transactions (the simulator's full profile) at a target rate
with a few malformed ones, to show the dead-letter path, follows the decisions stream, and
reports throughput, end-to-end latency (enqueue -> decision), outcomes, what the store holds
and the alerts received.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
import sqlalchemy as sa

from fraudstream.config import Settings, to_environ
from fraudstream.generate import GenerateOptions, Row, prepare_traffic
from fraudstream.generate import run as run_generator
from fraudstream.schema import decode_decision
from fraudstream.stream.fleet import last_id, spawn_worker, stop_all, wait_for_partitions
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer

if TYPE_CHECKING:
    import polars as pl
    from numpy.typing import NDArray

    from fraudstream.alerts.receiver import LocalReceiver


@dataclass
class DemoReport:
    run_id: str
    workers: int
    target_tps: float
    produced: int = 0
    malformed_sent: int = 0
    frauds_sent: int = 0
    flagged: int = 0
    """Decisions that were step_up, review or block."""
    frauds_flagged: int = 0
    backlog: int = 0
    model_version: str = "none"
    model_metrics: dict[str, float] = field(default_factory=dict)
    """Test-week figures of a model the demo trained (empty when it reused one)."""
    """Transactions already waiting in the input streams: workers score them first."""
    decided: int = 0
    dead_letters: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    rule_hits: dict[str, int] = field(default_factory=dict)
    store: str = ""
    stored: int = 0
    """Decisions of this run in the store when the demo ended."""
    alerts_received: int = 0
    alerts_verified: int = 0
    alert_latencies_ms: list[float] = field(default_factory=list)
    """Decision time -> webhook received, per alert."""
    logs: str = ""

    @property
    def throughput(self) -> float:
        return self.decided / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workers": self.workers,
            "target_tps": self.target_tps,
            "transactions": self.produced,
            "malformed_sent": self.malformed_sent,
            "frauds_sent": self.frauds_sent,
            "flagged": self.flagged,
            "frauds_flagged": self.frauds_flagged,
            "backlog_before": self.backlog,
            "model_version": self.model_version,
            "model_metrics": self.model_metrics,
            "decisions": self.decided,
            "dead_letters": self.dead_letters,
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_tps": round(self.throughput, 1),
            "latency_ms": {
                "p50": round(self.percentile(50), 2),
                "p95": round(self.percentile(95), 2),
                "p99": round(self.percentile(99), 2),
                "max": round(max(self.latencies_ms, default=0.0), 2),
            },
            "store": self.store,
            "stored": self.stored,
            "alerts": {
                "received": self.alerts_received,
                "verified": self.alerts_verified,
                "latency_ms_p50": _pct(self.alert_latencies_ms, 50),
                "latency_ms_p95": _pct(self.alert_latencies_ms, 95),
            },
            "logs": self.logs,
            "outcomes": dict(sorted(self.outcomes.items())),
            "rule_hits": dict(sorted(self.rule_hits.items(), key=lambda kv: -kv[1])),
        }


class DemoRun:
    """One demo run against the configured server."""

    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        *,
        workers: int,
        tps: float,
        duration: float,
        bad_ratio: float,
        seed: int,
    ) -> None:
        self.settings = settings
        self.client = client
        self.keys = StreamKeys.of(settings)
        self.duration = duration
        self.bad_ratio = bad_ratio
        self.seed = seed
        self.report = DemoReport(run_id=secrets.token_hex(4), workers=workers, target_tps=tps)
        self._procs: list[subprocess.Popen[bytes]] = []
        """The workers (a subclass may run the traffic on workers it started itself)."""
        self._consumers: list[subprocess.Popen[bytes]] = []
        """The sink and the alerts consumer, started and stopped by every `run`."""
        self.key_created: Path | None = None
        self._fraud_ids: set[str] = set()

    def run(self, on_progress: Callable[[int, int], None] | None = None) -> DemoReport:
        from fraudstream.alerts.receiver import LocalReceiver
        from fraudstream.store.engine import create_engine, database_url, describe

        self.report.backlog = self.backlog()
        start_decisions = last_id(self.client, self.keys.decisions)
        start_dead = last_id(self.client, self.keys.deadletter)
        secret = secrets.token_hex(16)
        with LocalReceiver(secret) as receiver:
            try:
                self._start_workers()
                consumers = time.monotonic()
                self._start_consumers(receiver.url, secret)
                self._wait_for_workers()
                self._wait_for_consumers(consumers)
                traffic = self._traffic()  # before the clock: ~0.5–0.9 s, not the pipeline's
                t0 = time.monotonic()
                producer = threading.Thread(target=self._produce, args=traffic, daemon=True)
                producer.start()
                self._follow(start_decisions, producer, on_progress)
                self.report.elapsed_s = time.monotonic() - t0
                self.report.dead_letters = self._count_dead(start_dead)
                engine = create_engine(database_url(self.settings))
                self.report.store = describe(engine)
                self._wait_for_store(engine)
                engine.dispose()
                self._wait_for_alerts(receiver)
            finally:
                self._stop_workers()
                stop_all(self._consumers)
        return self.report

    def _start_consumers(self, webhook_url: str, secret: str) -> None:
        """The SQL sink and the alerts consumer, their progress lines in log files (the
        demo prints its own summary). The webhook goes to the demo's receiver whatever the
        settings say; e-mail only if the settings configure it."""
        env = {
            **os.environ,
            **to_environ(self.settings),
            "FRAUDSTREAM_ALERTS_WEBHOOK_URL": webhook_url,
            "FRAUDSTREAM_ALERTS_WEBHOOK_SECRET": secret,
            "FRAUDSTREAM_ALERTS_FILE": "",
        }
        logs = self.settings.data_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.report.logs = str(logs)
        for command in (["sink"], ["alerts", "run"]):
            log = (logs / f"demo-{command[0]}.log").open("ab")
            self._consumers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "fraudstream", *command],
                    env=env,
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()

    def _wait_for_consumers(self, started: float, timeout: float = 30.0) -> None:
        """Until the sink and the alerts consumer read the decisions stream (a read of each
        since ``started``), or ``timeout``, or a process exited (its log says why; the report
        shows what was stored and alerted). Traffic started beside them, their start-up
        (imports, the schema migration: ~2 s of CPU each) took the cores from the workers
        and made the run's slowest decisions."""
        from fraudstream.alerts.consumer import ALERTS_GROUP
        from fraudstream.store.sink import SINK_GROUP

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            age_ms = (time.monotonic() - started) * 1000
            if all(self._reading(group, age_ms) for group in (SINK_GROUP, ALERTS_GROUP)):
                return
            if any(proc.poll() is not None for proc in self._consumers):
                return
            time.sleep(0.1)

    def _reading(self, group: str, within_ms: float) -> bool:
        """A consumer of ``group`` read the decisions stream in the last ``within_ms``."""
        try:
            consumers: Any = self.client.xinfo_consumers(self.keys.decisions, group)
        except redis.ResponseError:  # the group is not created yet
            return False
        return any(int(c["idle"]) < within_ms for c in consumers)

    def _wait_for_store(self, engine: sa.Engine, timeout: float = 30.0) -> None:
        """Until the sink holds every decision of the run (or ``timeout``)."""
        from fraudstream.store.tables import decisions

        query = sa.select(sa.func.count()).where(
            decisions.c.transaction_id.like(self.report.run_id + "-%")
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with engine.connect() as connection:
                    self.report.stored = int(connection.execute(query).scalar_one())
            except sa.exc.OperationalError:  # the sink has not created the tables yet
                self.report.stored = 0
            if self.report.stored >= self.report.decided or time.monotonic() > deadline:
                return
            time.sleep(0.25)

    def _wait_for_alerts(self, receiver: LocalReceiver, timeout: float = 20.0) -> None:
        """Until an alert per block and per step-up (its code) of the run arrived (or
        ``timeout``)."""
        expected = sum(self.report.outcomes.get(o, 0) for o in ("block", "step_up"))
        deadline = time.monotonic() + timeout
        prefix = self.report.run_id + "-"
        while True:
            got = [r for r in receiver.received() if _of_run(r.body, prefix)]
            if len(got) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.report.alerts_received = len(got)
        self.report.alerts_verified = sum(r.verified for r in got)
        self.report.alert_latencies_ms = [
            (r.at - datetime.fromisoformat(r.body["decided_at"]).timestamp()) * 1000
            for r in got
            if "decided_at" in r.body
        ]

    def ensure_model(self, progress: Callable[[str], None] | None = None) -> str:
        """The active model, or one trained now on a small simulated history and activated
        (first run only: ~1,000 customers over 90 days, 28 training days). Training the
        first model creates the registry key like `train` (``key_created`` names the file).

        Raises:
            ModelError: the active model does not load here, or models are stored and this
                host has no key (the workers would refuse to start).
        """
        from fraudstream.features import default_feature_set
        from fraudstream.models import KeySource, ModelRegistry, TrainOptions, evaluate, train
        from fraudstream.simulate import SimulationConfig, simulate

        source = KeySource(self.settings.model_registry_key, self.settings.data_path)
        registry = ModelRegistry(self.client, source)
        registry.check_key()
        active = registry.active_version()
        if active is not None:
            registry.load(active, default_feature_set())
        else:
            self.key_created = registry.create_key()
            say = progress or (lambda _msg: None)
            say("simulating a training history")
            world = simulate(
                SimulationConfig(
                    n_customers=1_000,
                    n_terminals=2_000,
                    n_days=90,
                    profile="full",
                    seed=self.seed + 100,
                )
            )
            options = TrainOptions(train_days=28)
            trained = train(world.transactions, world.labels, options, say)
            active = registry.save(trained, activate=True)
            metrics = evaluate(trained, None, None, options)
            self.report.model_metrics = {
                k: round(float(metrics[k]), 3)
                for k in ("auc_roc", "average_precision", "card_precision_at_100")
            }
        self.report.model_version = active
        return active

    def backlog(self) -> int:
        pipe = self.client.pipeline(transaction=False)
        for stream in self.keys.inputs():
            pipe.xlen(stream)
        return int(sum(pipe.execute()))

    def warm_up(self) -> None:
        """Build a worker's scorer here once, so the feature kernels are compiled into numba's
        cache before the workers start: on a fresh install each worker would otherwise compile
        them itself, all at once, for ~50 s of CPU each (the workers then load them in ~1 s)."""
        from fraudstream.scoring import build_scorer

        build_scorer(self.settings, self.client)

    def _start_workers(self) -> None:
        for _ in range(self.report.workers):
            self._procs.append(spawn_worker(self.settings, 1))

    def _wait_for_workers(self, timeout: float = 120.0) -> None:
        """Produce only once every worker holds its share of partitions, so the figures
        measure the pipeline, not interpreter start-up."""
        wait_for_partitions(self.client, self.keys, self.report.workers, self._procs, timeout)

    def _stop_workers(self) -> None:
        stop_all(self._procs)

    def _traffic(self) -> tuple[pl.DataFrame, list[Row], NDArray[np.bool_], GenerateOptions]:
        """Simulated traffic (a small full-profile world), a few payloads broken on purpose."""
        options = GenerateOptions(
            tps=self.report.target_tps,
            duration=self.duration,
            run_id=self.report.run_id,
            isolate=True,
            seed=self.seed,
            batch_size=self.settings.batch_size,
        )
        picked, rows = prepare_traffic(options, self.keys)
        rng = np.random.default_rng(self.seed + 1)
        broken = rng.random(len(rows)) < self.bad_ratio
        rows = [
            (t, stream, _malformed(blob)) if bad else (t, stream, blob)
            for (t, stream, blob), bad in zip(rows, broken, strict=True)
        ]
        frauds = picked.filter(picked["is_fraud"])["transaction_id"].to_list()
        self._fraud_ids.update(frauds)  # before sending: decisions are counted as they come
        return picked, rows, broken, options

    def _produce(
        self,
        picked: pl.DataFrame,
        rows: list[Row],
        broken: NDArray[np.bool_],
        options: GenerateOptions,
    ) -> None:
        """The traffic at the target rate."""
        producer = Producer(self.client, self.keys, batch_size=self.settings.batch_size)
        stats = run_generator(producer, rows, options)
        self.report.malformed_sent = int(broken[: stats.sent].sum())
        sent = picked.head(stats.sent)
        self.report.frauds_sent = int(sent["is_fraud"].sum())
        self.report.produced = stats.sent - self.report.malformed_sent

    def _follow(
        self,
        last: bytes,
        producer: threading.Thread,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        prefix = self.report.run_id + "-"
        expected = int(self.report.target_tps * self.duration)
        deadline = time.monotonic() + self.duration + 60
        while time.monotonic() < deadline:
            reply: Any = self.client.xread({self.keys.decisions: last}, count=5000, block=200)
            for _, messages in reply or []:
                for entry_id, fields in messages:
                    last = entry_id
                    self._record(decode_decision(fields[PAYLOAD]), prefix)
            if on_progress:
                on_progress(self.report.decided, expected)
            if not producer.is_alive() and self.report.decided >= self.report.produced:
                break

    def _record(self, decision: Any, prefix: str) -> None:
        if not decision.transaction_id.startswith(prefix):
            return
        self.report.decided += 1
        self.report.latencies_ms.append(decision.latency_ms)
        self.report.outcomes[decision.outcome] = self.report.outcomes.get(decision.outcome, 0) + 1
        if decision.outcome != "approve":
            self.report.flagged += 1
            self.report.frauds_flagged += decision.transaction_id in self._fraud_ids
        for reason in decision.reasons + decision.shadow:
            if reason.startswith("rule:"):
                key = reason + (" (shadow)" if reason in decision.shadow else "")
                self.report.rule_hits[key] = self.report.rule_hits.get(key, 0) + 1

    def _count_dead(self, start: bytes) -> int:
        entries: Any = self.client.xrange(self.keys.deadletter, min=b"(" + start, max="+")
        return sum(self.report.run_id.encode() in f.get(b"payload", b"") for _, f in entries)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def _of_run(body: dict[str, Any], prefix: str) -> bool:
    return str(body.get("transaction_id", "")).startswith(prefix)


def _malformed(blob: bytes) -> bytes:
    """A payload a broken upstream might send: the amount went negative."""
    return blob.replace(b'"amount":', b'"amount":-', 1)
