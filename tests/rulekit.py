"""What the rules tests share: the schema they compile against and a batch builder."""

from __future__ import annotations

from typing import Any

import numpy as np

from fraudstream.rules import EXPECTED_FEATURES, RuleSchema, Type

FEATURES: dict[str, Type] = {
    **EXPECTED_FEATURES,
    "customer_avg_amount_30d": Type.NUMBER,
    "terminal_risk_7d_delay7d": Type.NUMBER,
    "is_first_seen_device": Type.BOOL,
}
"""The shipped defaults' features plus a few the tests use by name."""
SCHEMA = RuleSchema.build(FEATURES)


def batch(**columns: list[Any]) -> dict[str, Any]:
    """Columns from lists: numbers (None = null) become floats, strings object arrays."""
    out: dict[str, Any] = {}
    for name, values in columns.items():
        if any(isinstance(v, str) for v in values):
            out[name] = np.array(values, dtype=object)
        else:
            out[name] = np.array([np.nan if v is None else float(v) for v in values])
    return out
