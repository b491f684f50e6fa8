"""The whole pipeline on a three-node Valkey Cluster: `fraudstream produce` and workers as
users run them (subprocesses, ``FRAUDSTREAM_VALKEY_URL=redis+cluster://…``), every
transaction decided once, kept as streamed, features equal to an offline recount."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from clikit import run_cli
from fraudstream.cluster import cluster_url
from fraudstream.config import Settings
from fraudstream.schema import Label, encode
from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.valkey import connect, is_cluster
from test_stream import _txs
from test_supervisor import _features_match_an_offline_recount, _kept_as_streamed
from test_worker_process import _decided_ids, worker_env

TOTAL = 3_000


@pytest.fixture
def cluster_settings(cluster_nodes: list[redis.Redis], tmp_path: Path) -> Settings:
    """Settings naming the session's cluster by its URL, on flushed nodes."""
    kwargs = cluster_nodes[0].get_connection_kwargs()
    ports = [int(n.get_connection_kwargs()["port"]) for n in cluster_nodes]
    for node in cluster_nodes:
        node.flushall()
    url = cluster_url(kwargs["password"], "127.0.0.1", ports)
    return Settings(data_dir=str(tmp_path / "data"), valkey_url=url, partitions=8)


def test_a_partitions_keys_share_a_slot_and_partitions_spread_over_the_slots() -> None:
    keys = StreamKeys("tx", 16, cluster=True)
    for p in range(16):
        names = [keys.input(p), keys.lease(p), keys.lease_generation(p), keys.outbox(p)]
        assert len({key_slot(n.encode()) for n in names}) == 1, names
    shared = [keys.decisions, keys.deadletter, keys.labels, keys.label_log, keys.workers]
    assert len({key_slot(n.encode()) for n in [*shared, keys.relayed]}) == 1
    thirds = Counter(key_slot(keys.input(p).encode()) * 3 // 16384 for p in range(16))
    assert sorted(thirds.values()) == [5, 5, 6]  # as even as 16 over 3 can be
    assert StreamKeys("tx", 16).input(3) == "tx.in.3"  # one node: the names as they were


def test_connect_gives_a_cluster_client_for_a_cluster_url(cluster_settings: Settings) -> None:
    client = connect(cluster_settings)
    assert is_cluster(client)
    client.set("a", 1)
    client.set("b", 2)  # another slot, served through the same client
    assert client.get("b") == b"2"


@pytest.mark.slow
def test_produce_and_workers_on_a_cluster_decide_each_transaction_once(
    cluster_settings: Settings, tmp_path: Path
) -> None:
    settings = cluster_settings
    txs = _txs(TOTAL, customers=300)
    source = tmp_path / "txs.jsonl"
    source.write_bytes(b"\n".join(encode(tx) for tx in txs) + b"\n")
    env = {"FRAUDSTREAM_PARTITIONS": "8", "FRAUDSTREAM_DATA_DIR": settings.data_dir}
    produced = run_cli("produce", str(source), env=env, valkey_url=settings.valkey_url)
    assert produced.returncode == 0, produced.stderr
    client = connect(settings)
    keys = StreamKeys.of(settings)
    labels = [_label(tx.transaction_id, tx.timestamp) for tx in txs[:20]]
    Producer(client, keys).send_labels(labels)
    assert sum(client.xlen(s) for s in keys.inputs()) == TOTAL
    worker = subprocess.run(
        [sys.executable, "-m", "fraudstream", "worker", "--processes", "2", "--burst"],
        env=worker_env(settings.valkey_url, settings),
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr.decode()
    ids = _decided_ids(client, keys)
    assert len(ids) == len(set(ids)) == TOTAL
    _kept_as_streamed(client, keys)
    _features_match_an_offline_recount(client, settings, txs)
    assert client.xlen(keys.labels) == 0 and client.xlen(keys.label_log) == len(labels)
    assert all(_relayed(client, keys, p) for p in range(keys.partitions))


def _label(transaction_id: str, at: Any) -> Label:
    return Label(transaction_id=transaction_id, is_fraud=False, reported_at=at + timedelta(days=1))


def _relayed(client: redis.Redis, keys: StreamKeys, partition: int) -> bool:
    """Every entry of the partition's outbox is at or below its relay mark, and nothing of
    its input stream is left pending."""
    mark: Any = client.hget(keys.relayed, str(partition))
    outbox: Any = client.xrange(keys.outbox(partition))
    last = _id(outbox[-1][0]) if outbox else (0, 0)
    pending = int(client.xpending(keys.input(partition), GROUP)["pending"])
    return pending == 0 and (mark is not None and last <= _id(mark))


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)
