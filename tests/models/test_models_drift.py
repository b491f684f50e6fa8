"""The drift reference a trained model carries, through the signed registry and back."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import timedelta

import numpy as np
import polars as pl
import redis

from alertkit import SECRET, smtp_server, webhook_receiver
from fraudstream import metrics
from fraudstream.alerts.channels import Channel
from fraudstream.alerts.mail import EmailChannel, SmtpOptions
from fraudstream.alerts.retry import RetryPolicy
from fraudstream.alerts.routing import ChannelName
from fraudstream.alerts.webhook import WebhookChannel
from fraudstream.drift.alert import DriftWatch
from fraudstream.drift.monitor import DriftMonitor
from fraudstream.drift.psi import psi
from fraudstream.drift.reference import TOP_FEATURES, Reference
from fraudstream.drift.window import DriftWindow
from fraudstream.features import default_feature_set
from fraudstream.models import ModelRegistry, TrainedModel, split

KEY = b"k" * 32


def test_reference_round_trips_through_a_saved_bundle(
    client: redis.Redis, trained: TrainedModel
) -> None:
    made = Reference.from_meta(trained.bundle.meta)
    assert made is not None
    registry = ModelRegistry(client, KEY)
    loaded = registry.load(registry.save(trained), default_feature_set())
    assert Reference.from_meta(loaded.meta) == made
    top = list(trained.bundle.importance())[:TOP_FEATURES]
    assert made.feature_names == top
    assert made.rows > 1_000 and 300 < len(str(made.to_meta())) < 8_000  # small


def _holdout(trained: TrainedModel) -> np.ndarray:
    """The holdout rows `train` measured the reference on."""
    assert trained.dataset is not None
    train_rows = split(trained.dataset, trained.protocol, known_lookback_days=7).train
    cut = trained.protocol.train_end - timedelta(days=trained.bundle.meta["holdout_days"])
    return trained.dataset.matrix(train_rows.filter(pl.col("day") > cut))


def test_the_training_holdout_itself_does_not_drift(trained: TrainedModel) -> None:
    """Scoring the holdout rows live gives the reference's own distribution: PSI ~ 0."""
    made = Reference.from_meta(trained.bundle.meta)
    assert made is not None and trained.dataset is not None
    X = _holdout(trained)
    window = DriftWindow(made, "v", trained.dataset.feature_names, capacity=10**9, min_rows=1)
    window.observe(X, trained.bundle.score(X).astype(np.float64))
    assert window.rows == made.rows
    assert psi(made.score.shares, window.counts[: len(made.score.shares)]) < 0.01


def _gauges(name: str) -> dict[str, float]:
    text = metrics.exposition().decode()
    found = re.findall(rf"^{name}(?:{{(.*)}})? (\S+)$", text, re.MULTILINE)
    return {labels: float(value) for labels, value in found}


def test_a_shifted_live_window_raises_the_gauges_and_alerts_once(
    client: redis.Redis, trained: TrainedModel
) -> None:
    assert trained.dataset is not None
    names = trained.dataset.feature_names
    made = Reference.from_meta(trained.bundle.meta)
    assert made is not None
    bundle = trained.bundle
    monitor = DriftMonitor(client, "tx", names, consumer="w1", capacity=3_000, min_rows=500,
                           interval_s=0.0)  # fmt: skip
    X = _holdout(trained)[:3_000]
    monitor.observe(X, bundle.score(X).astype(np.float64), bundle)
    monitor.tick()
    calm = _gauges("fraudstream_score_psi")
    assert calm and max(calm.values()) < 0.1
    shifted = X.copy()
    for name in made.feature_names:  # the top features move: amounts x5, counts +3 ...
        j = names.index(name)
        shifted[:, j] = shifted[:, j] * 5 + 3
    for part in np.array_split(shifted, 6):  # batch by batch, as a worker would
        monitor.observe(part, bundle.score(part).astype(np.float64), bundle)
    monitor.tick()
    features = _gauges("fraudstream_feature_psi")
    assert {f'feature="{n}"' for n in made.feature_names} <= set(features)
    assert max(features.values()) > 0.25
    with webhook_receiver() as receiver, smtp_server() as mailbox:
        channels: dict[ChannelName, Channel] = {
            "webhook": WebhookChannel(receiver.url, SECRET, timeout_s=2.0),
            "email": EmailChannel(SmtpOptions(host=mailbox.host, port=mailbox.port,
                                  security="plain", recipients=("team@example.com",))),
        }  # fmt: skip
        watch = DriftWatch(client, "tx", channels, RetryPolicy(attempts=1), min_rows=500)
        first, again = watch.check(), watch.check()
        assert [c.sent for c in first] == [["webhook", "email"]] and [c.sent for c in again] == [[]]
        assert len(receiver.wait_for(1)) == 1 and len(mailbox.messages) == 1
    body = json.loads(receiver.received[0].body)
    assert receiver.received[0].verified and body["kind"] == "drift"
    assert body["model_version"] == bundle.version and body["over"] == first[0].over
    assert "DRIFT" in mailbox.messages[0][1]["Subject"]
    old = dataclasses.replace(bundle, meta={k: v for k, v in bundle.meta.items() if k != "drift"})
    old.version = "trained-before-drift"
    monitor.observe(X, old.score(X).astype(np.float64), old)  # swapped to an old model
    assert monitor.window is None
    assert max(_gauges("fraudstream_score_psi").values()) == 0
    assert max(_gauges("fraudstream_feature_psi").values()) == 0


def test_a_bundle_without_a_reference_has_no_drift(trained: TrainedModel) -> None:
    meta = {k: v for k, v in trained.bundle.meta.items() if k != "drift"}
    assert Reference.from_meta(meta) is None
