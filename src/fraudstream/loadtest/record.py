"""A finished load-test run: the figures stored for it and shown by `fraudstream monitor`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

STAGES = ("end_to_end", "queue", "features", "model", "rules")
"""``end_to_end`` is the decision's ``latency_ms``; the others its ``stages``."""


@dataclass(frozen=True)
class Latency:
    """One stage's latency over a run, in ms."""

    stage: str
    samples: int
    avg_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def of(cls, stage: str, values: list[float]) -> Latency:
        """
        >>> Latency.of("queue", [1.0, 2.0, 3.0]).p50_ms
        2.0
        >>> Latency.of("rules", []).samples
        0
        """
        if not values:
            return cls(stage, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        a = np.asarray(values, dtype=float)
        p50, p95, p99 = (float(v) for v in np.percentile(a, [50, 95, 99]))
        return cls(stage, len(a), float(a.mean()), p50, p95, p99, float(a.min()), float(a.max()))


@dataclass(frozen=True)
class Second:
    """One second of a run (second 0 starts when sending starts)."""

    second: int
    target_tps: float
    """What the pattern asked for during that second."""
    sent: int
    decided: int
    """Decisions made during that second: the achieved tx/s."""
    p50_ms: float | None
    p99_ms: float | None
    """End-to-end latency of those decisions; None when there were none."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    pattern: str
    target_tps: float
    duration_s: float
    """Asked for; ``elapsed_s`` is what it took (first send to last decision)."""
    processes: int
    status: str
    """``completed``; ``interrupted`` (Ctrl-C); ``incomplete`` (not every transaction sent
    was decided before the drain timed out, or the workers stopped)."""
    started_at: datetime
    ended_at: datetime
    elapsed_s: float
    sent: int
    decided: int
    dead_letters: int
    frauds_sent: int
    frauds_caught: int
    """Frauds among the sent transactions that were decided step-up, review or block."""
    achieved_tps: float
    model_version: str
    outcomes: dict[str, int] = field(default_factory=dict)
    latencies: list[Latency] = field(default_factory=list)
    seconds: list[Second] = field(default_factory=list)

    def latency(self, stage: str = "end_to_end") -> Latency:
        for lat in self.latencies:
            if lat.stage == stage:
                return lat
        return Latency.of(stage, [])

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_at"] = self.started_at.isoformat()
        out["ended_at"] = self.ended_at.isoformat()
        return out
