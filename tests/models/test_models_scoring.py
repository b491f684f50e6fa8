"""The active model in the worker's scoring path: its score, thresholds, reasons, shadow."""

from __future__ import annotations

from typing import Any

import redis

from fraudstream.drift.monitor import DriftMonitor
from fraudstream.features import FeatureEngine, default_feature_set
from fraudstream.generate import GenerateOptions, encode_rows, select
from fraudstream.models import ModelRegistry, ModelWatcher, TrainedModel
from fraudstream.schema import decode_decision
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.simulate import SimulationResult
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions

KEY = b"k" * 32
KEYS = StreamKeys("tx", 4)


def _decisions(client: redis.Redis) -> list[Any]:
    entries: Any = client.xrange(KEYS.decisions)
    return [decode_decision(f[PAYLOAD]) for _, f in entries]


def test_worker_scores_with_the_active_model_and_logs_the_shadow(
    client: redis.Redis, history: SimulationResult, trained: TrainedModel
) -> None:
    registry = ModelRegistry(client, KEY)
    version = registry.save(trained, activate=True)
    registry.shadow(version)
    watcher = ModelWatcher(registry, default_feature_set())
    engine = FeatureEngine(client)
    drift = DriftMonitor(client, "tx", engine.names, capacity=10**9)
    scorer = Scorer(
        AmountPolicy(220, 5000, 500, 800), features=engine, models=watcher, on_scored=drift.observe
    )
    picked = select(history.transactions, history.transactions.height, GenerateOptions(run_id="m"))
    rows = encode_rows(picked, history.labels, KEYS, True, 500)
    Producer(client, KEYS).send_to_streams((s, b) for _, s, b in rows)
    Worker(client, KEYS, scorer, WorkerOptions(block_ms=50)).run(burst=True, handle_signals=False)
    decisions = _decisions(client)
    assert len(decisions) == picked.height
    assert {d.model_version for d in decisions} == {version}
    review = round(trained.bundle.thresholds["review"])
    flagged = [d for d in decisions if d.score >= review]
    assert flagged and all(d.outcome != "approve" for d in flagged)
    assert all(d.reasons for d in flagged), "every flagged decision says why"
    assert not any(r.startswith("amount_over") for d in decisions for r in d.reasons)
    assert all(d.shadow == [f"model:{version}={d.score}"] for d in decisions)
    fraud = set(picked.filter(picked["is_fraud"])["transaction_id"].to_list())
    caught = sum(d.transaction_id in fraud for d in flagged)
    assert caught / len(fraud) > 0.3  # the online features carry the model's signal
    assert drift.window is not None and drift.window.rows == len(decisions)  # every batch told
