"""Simulated histories shared by the simulator tests (each generated once per session)."""

from __future__ import annotations

import dataclasses

import pytest

from fraudstream.simulate import SimulationConfig, SimulationResult, simulate

SMALL = SimulationConfig(n_customers=500, n_terminals=1000, n_days=60, seed=7)
"""Small enough to check every transaction, large enough for the statistics to be tight."""


@pytest.fixture(scope="session")
def small() -> SimulationResult:
    return simulate(SMALL)


@pytest.fixture(scope="session")
def small_full() -> SimulationResult:
    return simulate(dataclasses.replace(SMALL, profile="full"))


@pytest.fixture(scope="session")
def default_handbook() -> SimulationResult:
    """The Handbook's own configuration, to compare our figures with its published ones."""
    return simulate(SimulationConfig())
