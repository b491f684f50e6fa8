"""A small simulated history and one model trained on it, shared by the models tests."""

from __future__ import annotations

import pytest

from fraudstream.models import TrainedModel, TrainOptions, train
from fraudstream.simulate import SimulationConfig, SimulationResult, simulate

SMALL = SimulationConfig(n_customers=500, n_terminals=1000, n_days=60, seed=3)
OPTIONS = TrainOptions(train_days=21, anomaly_trees=30, max_rounds=200)
"""Test window = the last 7 days, after a 7-day delay; 21 training days end on day 45."""


@pytest.fixture(scope="session")
def options() -> TrainOptions:
    return OPTIONS


@pytest.fixture(scope="session")
def history() -> SimulationResult:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def trained(history: SimulationResult) -> TrainedModel:
    return train(history.transactions, history.labels, OPTIONS)
