"""Prometheus metrics across processes: two worker processes under the supervisor and the
API server write to one folder, and the server's ``/metrics`` adds them up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from apikit import KEY, call, post, sample_tx, start_server, stop_server
from fraudstream import metrics
from fraudstream.config import Settings
from fraudstream.metrics import WorkerMetrics
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions
from test_stream import _txs

pytestmark = pytest.mark.slow

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No folder inherited from the test runner: each process finds its own from the
    data dir, as on a user's machine."""
    monkeypatch.delenv(metrics.ENV, raising=False)
    yield


def _samples(text: str, name: str) -> dict[str, float]:
    """Labels -> value of every sample of ``name``."""
    out = {}
    for line in text.splitlines():
        found = SAMPLE.match(line)
        if found and found["name"] == name:
            out[found["labels"] or ""] = float(found["value"])
    return out


def test_metrics_of_worker_processes_and_the_api_add_up_at_one_endpoint(
    clean_env: None, valkey_url: str, settings: Settings, client: redis.Redis
) -> None:
    total = 120
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    Producer(client, keys).send(_txs(total, customers=40))
    Producer(client, keys).send_encoded([(0, b"not json"), (1, b'{"transaction_id": "x"}')])
    env = {
        **{k: v for k, v in os.environ.items() if k != metrics.ENV},
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_DATA_DIR": settings.data_dir,
        "FRAUDSTREAM_PARTITIONS": str(settings.partitions),
        "FRAUDSTREAM_BLOCK_MS": "100",
    }
    done = subprocess.run(
        [sys.executable, "-m", "fraudstream", "worker", "--processes", "2", "--burst", "--quiet"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    proc, base = start_server(
        valkey_url, Path(settings.data_dir), KEY, partitions=str(settings.partitions)
    )
    try:
        for i in range(5):
            assert post(base, "/v1/score", sample_tx(i))[0] == 200
        reply = call(base, "GET", "/metrics")
        refused = call(base, "GET", "/metrics", key=None)
    finally:
        stop_server(proc)
    assert reply.status == 200 and refused.status == 401
    text = reply.raw.decode()
    decided = _samples(text, "fraudstream_decisions_total")
    by_source = {
        source: sum(v for labels, v in decided.items() if f'source="{source}"' in labels)
        for source in ("worker", "api")
    }
    assert by_source == {"worker": total, "api": 5}, decided
    assert _samples(text, "fraudstream_dead_letters_total") == {'source="worker"': 2}
    latency = _samples(text, "fraudstream_latency_seconds_count")
    assert latency['stage="end_to_end"'] == total + 5
    assert latency['stage="features"'] == total + 5  # every decision says where time went
    assert sum(_samples(text, "fraudstream_score_count").values()) == total + 5
    versions = _samples(text, "fraudstream_active_version")
    assert any('kind="rules"' in labels and v == 1 for labels, v in versions.items()), versions
    folder = Path(settings.data_dir) / metrics.FOLDER
    assert list(folder.glob("counter_*.db")), "each process writes its own files"


def test_a_worker_measures_the_backlog_of_its_partitions(
    clean_env: None, settings: Settings, client: redis.Redis
) -> None:
    """Lag: entries of the worker's partitions not decided yet; pending: read, not acked."""
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    Producer(client, keys).send(_txs(40, customers=10))
    monitor = WorkerMetrics(interval_s=0.0)
    options = WorkerOptions(
        block_ms=50, lease_ttl_ms=settings.lease_ttl_ms, claim_idle_ms=settings.claim_idle_ms
    )
    scorer = Scorer(AmountPolicy.from_settings(settings))
    worker = Worker(client, keys, scorer, options, consumer="w1", monitor=monitor)
    worker.bootstrap()
    worker.leases.rebalance()  # alone: it holds every partition
    read: Any = client.xreadgroup(GROUP, "w1", {keys.input(0): ">"}, count=3)
    monitor.started(worker)
    gauges = _samples(metrics.exposition().decode(), "fraudstream_stream_lag")
    pending = _samples(metrics.exposition().decode(), "fraudstream_stream_pending")
    assert (gauges, pending) == ({"": 40}, {"": len(read[0][1])})
    worker.run(burst=True, handle_signals=False)
    monitor.tick(worker)
    text = metrics.exposition().decode()
    assert _samples(text, "fraudstream_stream_lag") == {"": 0}
    assert _samples(text, "fraudstream_stream_pending") == {"": 0}


def test_setup_drops_the_gauges_of_processes_that_are_gone(clean_env: None, tmp_path: Path) -> None:
    folder = metrics.setup(tmp_path)
    try:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        dead_pid = int(gone.stdout)
        stale = folder / f"gauge_livesum_{dead_pid}.db"
        live = folder / f"gauge_livesum_{os.getpid()}.db"
        kept = folder / f"counter_{dead_pid}.db"
        for path in (stale, live, kept):
            path.write_bytes(b"")
        metrics.setup(tmp_path)
        assert not stale.exists() and live.exists() and kept.exists()
    finally:
        os.environ.pop(metrics.ENV, None)


def test_the_grafana_dashboard_asks_only_for_metrics_fraudstream_exports(clean_env: None) -> None:
    dashboard = json.loads(
        (Path(__file__).parents[1] / "docs/grafana/fraudstream.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    asked = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for expr in exprs
        for name in re.findall(r"fraudstream_[a-z_]+", expr)
    }
    helped = re.findall(r"^# HELP (\S+)", metrics.exposition().decode(), re.MULTILINE)
    exported = {re.sub(r"_total$", "", name) for name in helped}
    assert asked and asked <= exported, asked - exported


BULK_CHECK = """
import json, math, sys
from prometheus_client import CollectorRegistry, Histogram
from fraudstream.metrics import LATENCY_BUCKETS, observe_all

values = json.loads(sys.argv[1])
registry = CollectorRegistry()
one = Histogram("one_by_one", "", ["k"], buckets=LATENCY_BUCKETS, registry=registry)
bulk = Histogram("all_at_once", "", ["k"], buckets=LATENCY_BUCKETS, registry=registry)
for v in values:
    one.labels("a").observe(v)
observe_all(bulk.labels("a"), values)
out = {}
for family in registry.collect():
    for s in family.samples:
        if not s.name.endswith("_created"):
            key = s.name[len(family.name) + 1 :] + "|" + s.labels.get("le", "")
            out.setdefault(key, {})[family.name] = s.value
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    "values",
    [
        [0.0005, 0.001, 0.0010001, 0.002, 0.05, 0.7, 30.0, 31.0, 1e9, -1.0] * 7,
        [i / 997 for i in range(2_000)],
        [0.003] * 3,  # under the bulk size: observe itself
    ],
)
def test_a_batch_observed_at_once_equals_each_value_observed(
    values: list[float], tmp_path: Path
) -> None:
    """`metrics.observe_all` reads prometheus-client's histogram internals: bucket by
    bucket, count and sum, it must equal ``observe`` one value at a time, in the
    multiprocess mode every fraudstream process runs in (the values in mmap files)."""
    env = {**os.environ, metrics.ENV: str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", BULK_CHECK, json.dumps(values)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    samples: dict[str, dict[str, float]] = json.loads(done.stdout)
    assert len(samples) == len(metrics.LATENCY_BUCKETS) + 3  # buckets, +Inf, count, sum
    for key, both in samples.items():
        one, bulk = both["one_by_one"], both["all_at_once"]
        if key.startswith("sum|"):
            assert bulk == pytest.approx(one, rel=1e-12)
        else:
            assert bulk == one, key
