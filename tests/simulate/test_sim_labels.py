"""Chargeback labels: one per fraud, reported after it, within the configured delay."""

from __future__ import annotations

import dataclasses

import msgspec
import numpy as np
import polars as pl
import pytest

from fraudstream.errors import ConfigError
from fraudstream.schema import Label
from fraudstream.simulate import LabelDelay, SimulationResult, simulate
from fraudstream.simulate.labels import draw_delays

HOUR = 3600.0


def _delay_hours(labels: pl.DataFrame) -> pl.Series:
    return (labels["reported_at"] - labels["tx_timestamp"]).dt.total_seconds() / HOUR


@pytest.mark.parametrize("fixture", ["small", "small_full"])
def test_every_fraud_has_one_label_after_it(fixture: str, request: pytest.FixtureRequest) -> None:
    result: SimulationResult = request.getfixturevalue(fixture)
    frauds = result.transactions.filter(pl.col("is_fraud"))
    labels = result.labels
    assert labels.height == frauds.height
    assert labels["transaction_id"].n_unique() == labels.height
    joined = labels.join(frauds, on="transaction_id", suffix="_tx")
    assert joined.height == labels.height
    for ours, theirs in [
        ("tx_timestamp", "timestamp"),
        ("customer_id", "customer_id_tx"),
        ("terminal_id", "terminal_id_tx"),
        ("fraud_scenario", "fraud_scenario_tx"),
    ]:
        assert (joined[ours] == joined[theirs]).all(), ours
    hours = _delay_hours(labels).to_numpy()
    cap = result.config.label_delay.cap_days * 24
    assert hours.min() > 0 and hours.max() <= cap
    assert labels["reported_at"].is_sorted()
    assert (labels["source"] == "chargeback").all() and labels["is_fraud"].all()


def test_labels_are_valid_schema_records(small_full: SimulationResult) -> None:
    for row in small_full.labels.head(500).to_dicts():
        label = msgspec.convert(row, Label)
        assert label.tx_timestamp is not None and label.reported_at > label.tx_timestamp


@pytest.mark.parametrize(
    ("delay", "statistic", "expected"),
    [
        (LabelDelay("lognormal", scale_hours=48, sigma=1.0, cap_days=60), np.median, 48),
        (LabelDelay("exponential", scale_hours=24, cap_days=60), np.mean, 24),
        (LabelDelay("fixed", scale_hours=7 * 24), np.max, 7 * 24),
    ],
)
def test_delay_distributions_have_their_scale(
    delay: LabelDelay, statistic: np.ufunc, expected: float
) -> None:
    hours = draw_delays(delay, 20_000, seed=3) / HOUR
    assert statistic(hours) == pytest.approx(expected, rel=0.05)
    assert hours.min() > 0


def test_delays_are_capped() -> None:
    hours = draw_delays(LabelDelay("lognormal", scale_hours=48, cap_days=2), 10_000, seed=3) / HOUR
    assert hours.max() == 48
    assert (hours == 48).mean() == pytest.approx(0.5, abs=0.03)  # the cap is the median


def test_label_delay_config_is_used(small: SimulationResult) -> None:
    config = dataclasses.replace(small.config, label_delay=LabelDelay("fixed", scale_hours=5))
    hours = _delay_hours(simulate(config).labels)
    assert (hours == 5).all()


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"distribution": "weibull"}, "label_delay.distribution"),
        ({"scale_hours": 0}, "label_delay.scale_hours"),
        ({"cap_days": -1}, "label_delay.cap_days"),
    ],
)
def test_bad_delay_settings_name_the_field(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        LabelDelay(**kwargs)  # type: ignore[arg-type]
    assert info.value.key == key
