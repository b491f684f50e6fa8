"""Prometheus metrics of every fraudstream process, served together at ``/metrics``.

Workers, API workers, the sink and the alerts consumer are separate processes, so the
metrics use prometheus-client's multiprocess mode: each process writes its values to
memory-mapped files in one folder (``data_dir/metrics``, or ``PROMETHEUS_MULTIPROC_DIR``
when set), and ``fraudstream serve`` adds them up at each scrape. The folder is chosen by
`setup`, which the long-running commands call before anything imports prometheus-client
(the library picks its storage at import) and which their child processes inherit through
the environment. Counters and histograms of processes that ended stay in the sums (totals
never go back); gauges count only live processes (`setup` drops the files of dead ones, the
supervisor those of a child it lost).

What is measured (names in `docs/operations.md` and the Grafana dashboard in
``docs/grafana/``):

- ``fraudstream_decisions_total{source, outcome}``: decisions by the stream workers
  (``worker``) and the API (``api``);
- ``fraudstream_latency_seconds{stage}``: ``end_to_end`` (arrival to decision) and the
  stages a decision reports (``queue``, ``features``, ``model``, ``rules``, ``challenge``);
- ``fraudstream_score``: the distribution of final scores (0–1000);
- ``fraudstream_dead_letters_total{source}``; ``fraudstream_stream_lag`` and
  ``fraudstream_stream_pending`` (the workers' partitions); ``fraudstream_active_version``
  {kind=model|rules, version} = 1;
- ``fraudstream_sink_stored_total``, ``fraudstream_sink_lag``;
  ``fraudstream_alerts_total{result}``, ``fraudstream_alerts_lag``;
- ``fraudstream_score_psi`` and ``fraudstream_feature_psi{feature}``: each worker's drift
  against its model's training reference (`fraudstream.drift`), the highest of the live
  workers (``livemax``: multiprocess gauges cannot carry a pid label); the features are the
  active model's top 5, a model swap sets the previous model's ones to 0.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fraudstream.schema import Decision

if TYPE_CHECKING:
    from fraudstream.drift.window import DriftFigures
    from fraudstream.stream.worker import Monitor, Worker

ENV = "PROMETHEUS_MULTIPROC_DIR"
FOLDER = "metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0)
SCORE_BUCKETS = tuple(float(b) for b in range(100, 1001, 100))


def setup(data_dir: str | Path) -> Path:
    """Choose the shared folder (``PROMETHEUS_MULTIPROC_DIR`` if set, else
    ``data_dir/metrics``), create it, drop the gauge files of processes that are gone, and
    export it to this process's environment (children inherit it). Call before the first
    metric is touched."""
    folder = Path(os.environ.get(ENV) or Path(data_dir) / FOLDER).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(folder)
    for path in glob.glob(str(folder / "gauge_live*_*.db")):
        pid = int(path.rsplit("_", 1)[1].removesuffix(".db"))
        if not _alive(pid):
            forget_process(pid)
    return folder


def forget_process(pid: int) -> None:
    """A process ended (or was killed): its gauges no longer count. (What prometheus-client's
    ``mark_process_dead`` does, without importing the library, whose storage is chosen at
    import.)"""
    folder = os.environ.get(ENV)
    if folder:
        for path in glob.glob(os.path.join(folder, f"gauge_live*_{pid}.db")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exposition() -> bytes:
    """The text format of every process's metrics (or of this process's alone, when no
    shared folder was set up)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(_metrics().registry)


class _Metrics:
    """The metric objects, made once per process (on first use, after `setup`)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "fraudstream_decisions", "Decisions made", ["source", "outcome"], registry=r
        )
        self.latency = Histogram(
            "fraudstream_latency_seconds",
            "Time from arrival to decision (end_to_end) and per scoring stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.score = Histogram(
            "fraudstream_score", "Final scores (0-1000)", buckets=SCORE_BUCKETS, registry=r
        )
        self.dead = Counter(
            "fraudstream_dead_letters", "Entries dead-lettered", ["source"], registry=r
        )
        self.lag = Gauge(
            "fraudstream_stream_lag",
            "Input entries not decided yet, in the workers' partitions",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pending = Gauge(
            "fraudstream_stream_pending",
            "Input entries read and not acked, in the workers' partitions",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.version = Gauge(
            "fraudstream_active_version",
            "1 for the model and rule-set versions a live process scores with",
            ["kind", "version"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.sink_stored = Counter(
            "fraudstream_sink_stored", "Decisions written to the SQL store", registry=r
        )
        self.sink_lag = Gauge(
            "fraudstream_sink_lag",
            "Decisions not stored yet",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.alerts = Counter(
            "fraudstream_alerts", "Alerts by result (sent, failed)", ["result"], registry=r
        )
        self.alerts_lag = Gauge(
            "fraudstream_alerts_lag",
            "Decisions not handled by the alerts consumer yet",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.score_psi = Gauge(
            "fraudstream_score_psi",
            "Population stability index of the model's scores against its training reference",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.feature_psi = Gauge(
            "fraudstream_feature_psi",
            "Population stability index of a top model feature against its training reference",
            ["feature"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.drift_features: set[str] = set()
        """The features whose PSI this process last set."""
        self.versions: dict[str, str] = {}
        """The versions last noted, per kind."""


@functools.cache
def _metrics() -> _Metrics:
    return _Metrics()


def observe(decisions: Sequence[Decision], source: str, dead: int = 0) -> None:
    """Count a batch of decisions (and its dead letters)."""
    m = _metrics()
    counts: dict[str, int] = {}
    stages: dict[str, list[float]] = {}
    for d in decisions:
        counts[d.outcome] = counts.get(d.outcome, 0) + 1
        for stage, ms in d.stages.items():
            stages.setdefault(stage, []).append(ms / 1000)
    observe_all(m.score, [d.score for d in decisions])
    observe_all(m.latency.labels("end_to_end"), [d.latency_ms / 1000 for d in decisions])
    for stage, seconds in stages.items():
        observe_all(m.latency.labels(stage), seconds)
    for outcome, n in counts.items():
        m.decisions.labels(source, outcome).inc(n)
    if dead:
        m.dead.labels(source).inc(dead)
    if decisions:
        _note_version(m, "model", decisions[-1].model_version)
        _note_version(m, "rules", decisions[-1].rules_version)


BULK = 8
"""From this many values `observe_all` counts the buckets at once."""


def observe_all(histogram: Any, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for each of ``values``, with one write per bucket touched.

    In multiprocess mode every ``observe`` is two writes to the memory-mapped file under a
    lock (the bucket, the sum): six histograms a decision cost ~15 µs of a worker's ~80 µs
    per transaction. Here a batch's values are counted per bucket with numpy, and each
    bucket and the sum get one increment. This reads prometheus-client's `Histogram`
    internals (``_upper_bounds``, ``_buckets``, ``_sum``, as its ``observe`` does):
    ``tests/test_metrics.py`` checks the result equals ``observe`` one value at a time, so a
    release that changes them fails there. Fewer than `BULK` values: ``observe`` itself.
    """
    if len(values) < BULK:
        for value in values:
            histogram.observe(value)
        return
    x = np.asarray(values, dtype=np.float64)
    bounds = np.asarray(histogram._upper_bounds, dtype=np.float64)
    # observe's bucket: the first bound >= the value (none for NaN: it only joins the sum)
    counts = np.bincount(np.searchsorted(bounds, x, side="left"), minlength=len(bounds) + 1)
    for i in np.flatnonzero(counts[: len(bounds)]).tolist():
        histogram._buckets[i].inc(int(counts[i]))
    histogram._sum.inc(float(x.sum()))


def _note_version(m: _Metrics, kind: str, version: str) -> None:
    """The version this process scores with reads 1; the one before it, 0."""
    before = m.versions.get(kind)
    if before == version:
        return
    if before is not None:
        m.version.labels(kind, before).set(0)
    m.version.labels(kind, version).set(1)
    m.versions[kind] = version


def drift_figures(figures: DriftFigures | None) -> None:
    """Set the PSI gauges of this process's window (a figure not measured yet stays as it
    was); features of an earlier model drop to 0. None (a model without a reference): all
    drop to 0."""
    m = _metrics()
    if figures is None:
        m.score_psi.set(0)
    elif figures.score.psi is not None:
        m.score_psi.set(figures.score.psi)
    for figure in figures.features if figures is not None else []:
        if figure.psi is not None:
            m.feature_psi.labels(figure.name).set(figure.psi)
    names = {f.name for f in figures.features} if figures is not None else set()
    for gone in m.drift_features - names:
        m.feature_psi.labels(gone).set(0)
    m.drift_features = names


def sink_progress(new_rows: int, lag: int) -> None:
    m = _metrics()
    m.sink_stored.inc(new_rows)
    m.sink_lag.set(lag)


def alerts_progress(sent: int, failed: int, lag: int) -> None:
    m = _metrics()
    if sent:
        m.alerts.labels("sent").inc(sent)
    if failed:
        m.alerts.labels("failed").inc(failed)
    m.alerts_lag.set(lag)


class WorkerMetrics:
    """A worker `Monitor`: counts each batch's decisions, and every ``interval_s`` measures
    the backlog of the worker's partitions."""

    def __init__(self, interval_s: float = 5.0) -> None:
        import time

        self.interval_s = interval_s
        self._clock = time.monotonic
        self._next = 0.0

    def started(self, worker: Worker) -> None:
        self._next = 0.0
        self.tick(worker)

    def decided(self, decisions: Sequence[Decision], entries: int) -> None:
        observe(decisions, "worker", dead=entries - len(decisions))

    def tick(self, worker: Worker) -> None:
        from fraudstream.stream.report import backlog

        now = self._clock()
        if now < self._next:
            return
        self._next = now + self.interval_s
        lag, pending = backlog(worker)
        m = _metrics()
        m.lag.set(lag)
        m.pending.set(pending)


class Monitors:
    """Several worker monitors as one."""

    def __init__(self, *monitors: Monitor | None) -> None:
        self.monitors = [m for m in monitors if m is not None]

    def started(self, worker: Worker) -> None:
        for m in self.monitors:
            m.started(worker)

    def decided(self, decisions: Sequence[Decision], entries: int) -> None:
        for m in self.monitors:
            m.decided(decisions, entries)

    def tick(self, worker: Worker) -> None:
        for m in self.monitors:
            m.tick(worker)
