"""The pipeline on plain Redis 7 (Debian's ``redis-server``), started as fraudstream starts
its embedded Valkey: whatever a deployment points ``valkey_url`` at, the core path holds.

Always run; the whole suite runs on Redis with ``FRAUDSTREAM_TEST_SERVER=redis pytest``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import redis

from fraudstream.config import Settings
from fraudstream.schema import Label
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.producer import Producer
from test_pipeline import _worker
from test_stream import _txs
from test_supervisor import _features_match_an_offline_recount
from test_worker_process import _decided_ids


def test_the_compatibility_server_is_redis_7(redis_client: redis.Redis) -> None:
    info: Any = redis_client.info("server")
    assert "valkey_version" not in info  # Valkey reports both
    assert str(info["redis_version"]).startswith("7.")


def test_produce_decide_and_label_on_redis(
    redis_client: redis.Redis, redis_settings: Settings
) -> None:
    """Every transaction decided once and kept, features counted as an offline recount
    counts them, and a chargeback applied: the worker's scripts, functions, leases,
    consumer groups and MULTI/EXEC commit all run on Redis."""
    client, settings = redis_client, redis_settings
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    txs = _txs(600, customers=40)
    fraud = txs[5]
    label = Label(
        transaction_id=fraud.transaction_id,
        is_fraud=True,
        reported_at=fraud.timestamp + timedelta(hours=1),
        customer_id=fraud.customer_id,
        terminal_id=fraud.terminal_id,
        tx_timestamp=fraud.timestamp,
    )
    Producer(client, keys).send(txs)
    Producer(client, keys).send_labels([label])
    worker = _worker(client, settings)
    stats = worker.run(burst=True, handle_signals=False)
    ids = _decided_ids(client, keys)
    assert len(ids) == len(set(ids)) == len(txs)
    assert set(ids) == {t.transaction_id for t in txs}
    kept = DecidedStore(client, keys.prefix).get_many(ids)
    assert [k.transaction_id if k else None for k in kept] == ids
    assert stats.labels == 1 and stats.dead_lettered == 0
    assert worker.scorer.features is not None
    assert worker.scorer.features.stats.labels_applied == 1
    assert sum(int(client.xpending(s, GROUP)["pending"]) for s in keys.inputs()) == 0
    _features_match_an_offline_recount(client, settings, txs)
