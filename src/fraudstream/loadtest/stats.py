"""What a load test measures while it runs: per decision, binned per second.

Seconds count from the moment sending starts (wall clock); a decision falls in the second of
its ``decided_at``, a sent transaction in the second the pacer reported it. The producer
thread reports sends while the follower records decisions, hence the lock.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from fraudstream.loadtest.record import STAGES, Latency, RunRecord, Second
from fraudstream.schema import Decision
from fraudstream.simulate.patterns import RateCurve


@dataclass(frozen=True)
class Snapshot:
    """The live figures: the current second's target, the last complete second's figures."""

    elapsed_s: float
    target_tps: float
    sent_tps: int
    achieved_tps: int
    p50_ms: float | None
    p99_ms: float | None
    sent: int
    decided: int
    dead_letters: int

    @property
    def lag(self) -> int:
        """Sent but neither decided nor dead-lettered yet."""
        return max(0, self.sent - self.decided - self.dead_letters)


class RunStats:
    """Counts and latencies of one run; `record` turns them into the stored `RunRecord`."""

    def __init__(self, curve: RateCurve, duration: float, started: float) -> None:
        self.curve, self.duration, self.started = curve, duration, started
        self.sent = self.decided = self.dead_letters = self.frauds_caught = 0
        self.outcomes: Counter[str] = Counter()
        self.model_version = ""
        self.last_decided = started
        self._stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self._sent_per_second: Counter[int] = Counter()
        self._latency_per_second: defaultdict[int, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def sent_until(self, sent: int, elapsed: float) -> None:
        """The pacer's progress: ``sent`` in all after ``elapsed`` seconds."""
        with self._lock:
            self._sent_per_second[int(elapsed)] += sent - self.sent
            self.sent = sent

    def add(self, decision: Decision, is_fraud: bool) -> None:
        at = decision.decided_at.timestamp()
        with self._lock:
            self.decided += 1
            self.outcomes[decision.outcome] += 1
            self.frauds_caught += is_fraud and decision.outcome != "approve"
            self.model_version = decision.model_version
            self.last_decided = max(self.last_decided, at)
            self._stages["end_to_end"].append(decision.latency_ms)
            for stage, ms in decision.stages.items():
                if stage in self._stages:
                    self._stages[stage].append(ms)
            self._latency_per_second[max(0, int(at - self.started))].append(decision.latency_ms)

    def add_dead_letter(self) -> None:
        with self._lock:
            self.dead_letters += 1

    def snapshot(self, elapsed: float) -> Snapshot:
        last = int(elapsed) - 1
        with self._lock:
            latencies = self._latency_per_second.get(last, [])
            p50, p99 = _percentiles(latencies)
            return Snapshot(
                elapsed_s=elapsed,
                target_tps=self.curve.rate(elapsed) if elapsed < self.duration else 0.0,
                sent_tps=self._sent_per_second.get(last, 0),
                achieved_tps=len(latencies),
                p50_ms=p50,
                p99_ms=p99,
                sent=self.sent,
                decided=self.decided,
                dead_letters=self.dead_letters,
            )

    def seconds(self) -> list[Second]:
        """Every second from the start to the last send or decision."""
        with self._lock:
            span = max([*self._sent_per_second, *self._latency_per_second], default=-1) + 1
            out = []
            for s in range(span):
                latencies = self._latency_per_second.get(s, [])
                p50, p99 = _percentiles(latencies)
                out.append(
                    Second(s, self._target(s), self._sent_per_second.get(s, 0),
                           len(latencies), p50, p99)
                )  # fmt: skip
            return out

    def _target(self, second: int) -> float:
        start, end = min(second, self.duration), min(second + 1, self.duration)
        return self.curve.count(end) - self.curve.count(start)

    def record(
        self, run_id: str, processes: int, status: str, frauds_sent: int, ended: float
    ) -> RunRecord:
        elapsed = max(self.last_decided, self.started + 1e-3) - self.started
        return RunRecord(
            run_id=run_id,
            pattern=self.curve.pattern,
            target_tps=self.curve.tps,
            duration_s=self.duration,
            processes=processes,
            status=status,
            started_at=datetime.fromtimestamp(self.started, UTC),
            ended_at=datetime.fromtimestamp(ended, UTC),
            elapsed_s=elapsed,
            sent=self.sent,
            decided=self.decided,
            dead_letters=self.dead_letters,
            frauds_sent=frauds_sent,
            frauds_caught=self.frauds_caught,
            achieved_tps=self.decided / elapsed,
            model_version=self.model_version or "none",
            outcomes=dict(sorted(self.outcomes.items())),
            latencies=[Latency.of(stage, values) for stage, values in self._stages.items()],
            seconds=self.seconds(),
        )


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99)
