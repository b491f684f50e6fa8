"""The active model in the worker's scoring path: its score, thresholds, reasons, shadow."""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np
import redis

from fraudstream.drift.monitor import DriftMonitor
from fraudstream.features import FeatureEngine, default_feature_set
from fraudstream.generate import GenerateOptions, encode_rows, select
from fraudstream.models import ModelRegistry, ModelWatcher, TrainedModel
from fraudstream.schema import Explanation, decode_decision
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.simulate import SimulationResult
from fraudstream.stream.keys import EXPLAIN, PAYLOAD, StreamKeys
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
    # every flagged decision the model scored streams what the model saw; no approve does
    entries: Any = client.xrange(KEYS.decisions)
    why = {
        decode_decision(f[PAYLOAD]).transaction_id: msgspec.json.decode(
            f[EXPLAIN], type=Explanation
        )
        for _, f in entries
        if EXPLAIN in f
    }
    assert set(why) == {d.transaction_id for d in decisions if d.outcome != "approve"}
    names = trained.bundle.feature_names
    sample = why[flagged[0].transaction_id]
    assert set(sample.features) == set(names) and set(sample.contributions) <= set(names)
    x = np.array([[np.nan if v is None else v for v in sample.features.values()]])
    ordered = dict(zip(names, trained.bundle.contributions(x)[0].tolist(), strict=False))
    assert all(abs(ordered[n] - c) < 1e-5 for n, c in sample.contributions.items())
