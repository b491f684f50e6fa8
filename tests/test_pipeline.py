"""The full scoring path in a worker: features, rules (hot reload), labels, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
import redis

from fraudstream.config import Settings
from fraudstream.generate import GenerateOptions, encode_rows, select
from fraudstream.rules import RuleSchema
from fraudstream.rules.registry import RuleRegistry
from fraudstream.schema import Label, Transaction, decode_decision, encode
from fraudstream.scoring import build_scorer
from fraudstream.simulate import SimulationConfig, simulate
from fraudstream.stream.keys import PAYLOAD, StreamKeys, partition_of
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions


@pytest.fixture(scope="module")
def history() -> tuple[pl.DataFrame, pl.DataFrame]:
    result = simulate(
        SimulationConfig(n_customers=200, n_terminals=400, n_days=15, profile="full", seed=11)
    )
    return result.transactions, result.labels


def _worker(client: redis.Redis, settings: Settings) -> Worker:
    options = WorkerOptions(
        batch_size=200,
        block_ms=50,
        lease_ttl_ms=settings.lease_ttl_ms,
        claim_idle_ms=settings.claim_idle_ms,
    )
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    return Worker(client, keys, build_scorer(settings, client), options, consumer="w")


def _send(
    client: redis.Redis,
    settings: Settings,
    frame: pl.DataFrame,
    labels: pl.DataFrame | None = None,
    run_id: str = "p",
) -> pl.DataFrame:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    picked = select(frame, frame.height, GenerateOptions(run_id=run_id))
    rows = encode_rows(
        picked, labels if labels is not None else frame.head(0), keys, labels is not None, 500
    )
    Producer(client, keys).send_to_streams((stream, blob) for _, stream, blob in rows)
    return picked


def _card_tx(transaction_id: str, timestamp: datetime) -> Transaction:
    """A card-present transaction of customer c1 at terminal t1."""
    return Transaction(
        transaction_id=transaction_id,
        timestamp=timestamp,
        customer_id="c1",
        terminal_id="t1",
        merchant_id="t1",
        amount=10.0,
        currency="EUR",
        channel="card_present",
    )


def _decisions(client: redis.Redis) -> dict[str, Any]:
    entries: Any = client.xrange("tx.decisions")
    return {d.transaction_id: d for d in (decode_decision(f[PAYLOAD]) for _, f in entries)}


def test_worker_scores_with_features_rules_and_labels(
    client: redis.Redis, settings: Settings, history: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    transactions, labels = history
    picked = _send(client, settings, transactions, labels)
    worker = _worker(client, settings)
    stats = worker.run(burst=True, handle_signals=False)
    decisions = _decisions(client)
    assert set(decisions) == set(picked["transaction_id"].to_list())
    assert stats.labels == int(picked["is_fraud"].sum()) > 0  # every chargeback applied
    assert worker.scorer.rules is not None and worker.scorer.rules.ruleset is not None
    version = worker.scorer.rules.ruleset.version
    assert all(d.rules_version.startswith(version) for d in decisions.values())
    hits = [r for d in decisions.values() for r in d.reasons if r.startswith("rule:")]
    assert hits, "the shipped default rules fire on simulated fraud"
    state = worker.scorer.features.customer_state(picked["customer_id"][0])  # type: ignore[union-attr]
    assert state  # the online state exists for a customer that was scored


def test_published_rule_is_picked_up_between_batches(
    client: redis.Redis, settings: Settings, history: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    transactions = history[0]
    worker = _worker(client, settings)
    _send(client, settings, transactions.head(300), run_id="before")
    worker.run(burst=True, handle_signals=False)
    schema = RuleSchema.build(worker.scorer.features.names)  # type: ignore[union-attr]
    RuleRegistry(client, schema).publish(
        "rules:\n  - id: block_everything\n    description: test\n    when: amount > 0\n"
        "    outcome: block\n"
    )
    _send(client, settings, transactions.slice(300, 300), run_id="after")
    worker.run(burst=True, handle_signals=False)
    decisions = _decisions(client)
    after = [d for t, d in decisions.items() if t.startswith("after-")]
    before = [d for t, d in decisions.items() if t.startswith("before-")]
    assert len(after) == 300 and all(d.outcome == "block" for d in after)
    assert all("rule:block_everything" in d.reasons for d in after)
    assert not any("rule:block_everything" in d.reasons for d in before)


def test_future_timestamp_goes_to_dead_letter_naming_the_field(
    client: redis.Redis, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    future = _card_tx("f1", datetime.now(UTC) + timedelta(days=2))
    fine = _card_tx("ok1", datetime.now(UTC))
    Producer(client, keys).send_encoded(
        (partition_of(t.customer_id, keys.partitions), encode(t)) for t in (future, fine)
    )
    _worker(client, settings).run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {"ok1"}
    dead: Any = client.xrange(keys.deadletter)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"field"] == b"timestamp" and b"in the future" in fields[b"reason"]


def test_a_fraud_label_the_features_cannot_place_goes_to_dead_letter(
    client: redis.Redis, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    now = datetime.now(UTC)
    tx = _card_tx("ok2", now)
    nowhere = Label(transaction_id="old", is_fraud=True, reported_at=now)  # no terminal
    fine = Label(
        transaction_id="older", is_fraud=True, reported_at=now, terminal_id="t1", tx_timestamp=now
    )
    Producer(client, keys).send_to_streams(
        [
            (keys.labels, encode(nowhere)),
            (keys.labels, encode(fine)),
            (keys.input(partition_of("c1", keys.partitions)), encode(tx)),
        ]
    )
    worker = _worker(client, settings)
    stats = worker.run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {"ok2"} and stats.labels == 1
    assert worker.scorer.features is not None
    assert worker.scorer.features.stats.labels_applied == 1
    dead: Any = client.xrange(keys.deadletter)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"field"] == b"terminal_id" and fields[b"stream"] == keys.labels.encode()


def test_shadow_rule_is_logged_but_never_decides(
    client: redis.Redis, settings: Settings, history: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    worker = _worker(client, settings)
    schema = RuleSchema.build(worker.scorer.features.names)  # type: ignore[union-attr]
    RuleRegistry(client, schema).publish(
        "rules:\n  - id: would_block_all\n    description: trial\n    when: amount > 0\n"
        "    outcome: block\n    score: {floor: 1000}\n    shadow: true\n"
    )
    picked = _send(client, settings, history[0].head(200), run_id="shadow")
    worker.run(burst=True, handle_signals=False)
    decisions = _decisions(client)
    assert len(decisions) == 200
    assert all(d.shadow == ["rule:would_block_all"] for d in decisions.values())
    policy_only = [d for d in decisions.values() if d.outcome == "block"]
    big = int((picked["amount"] >= settings.block_amount).sum())
    assert len(policy_only) == big  # the shadow rule changed no outcome
    assert not any("rule:would_block_all" in d.reasons for d in decisions.values())
