"""Simulated payment histories (the Fraud Detection Handbook's design, plus extensions) and
traffic shapes to replay them into the stream.

>>> from fraudstream.simulate import SimulationConfig, simulate
>>> result = simulate(SimulationConfig(n_customers=50, n_terminals=100, n_days=5))
>>> result.transactions.columns[:3]
['transaction_id', 'timestamp', 'customer_id']
"""

from __future__ import annotations

from fraudstream.simulate.history import (
    SimulationResult,
    iter_transaction_batches,
    iter_transaction_json,
    simulate,
    write_history,
)
from fraudstream.simulate.options import (
    EXTENSION_NAMES,
    PROFILES,
    Extensions,
    LabelDelay,
    Profile,
    SimulationConfig,
)
from fraudstream.simulate.scenarios import HANDBOOK_FIGURES, Scenario
from fraudstream.simulate.summary import summarize, summary_table

__all__ = [
    "EXTENSION_NAMES",
    "HANDBOOK_FIGURES",
    "PROFILES",
    "Extensions",
    "LabelDelay",
    "Profile",
    "Scenario",
    "SimulationConfig",
    "SimulationResult",
    "iter_transaction_batches",
    "iter_transaction_json",
    "simulate",
    "summarize",
    "summary_table",
    "write_history",
]
