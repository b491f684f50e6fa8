"""The console's live figures: a rolling window over ``tx.decisions``, read incrementally.

`Follower.poll` reads the decisions appended since its last read (``XRANGE`` from the last
entry id, exclusive), in pages, and files each in a `Window` of per-second buckets keyed by
the entry id's time (when the decision was appended: one clock, Valkey's, for every
producer). A bucket keeps counts, not decisions: per outcome, a score histogram and a
latency histogram on log-spaced edges, so memory does not grow with the rate and
percentiles over any span are a sum of histograms. `Window.snapshot` is the compact JSON the
console's event stream sends.

Outcomes are read as plain strings (not the schema's literal), so an outcome added to the
pipeline shows up here without a change.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np
import redis

from fraudstream.drift.window import DriftFigures
from fraudstream.stream.keys import PAYLOAD, TX

WINDOW_S = 60
RECENT = 12
PAGE = 2_000
POLL_MAX = 50_000
"""Entries read per poll at most: a console that fell behind skips to the window's start
rather than decoding a backlog nobody will see."""
SCORE_BIN = 50
SCORE_BINS = 1000 // SCORE_BIN
LATENCY_EDGES_MS = [10 ** (k / 40) for k in range(-80, 201)]
"""0.01 ms .. 100 s, each edge 6 % above the previous: a percentile is the upper edge of
its bin, at most 6 % above the true value."""
QUANTILES = (0.5, 0.95, 0.99)
TOP_RULES = 10


class LiveDecision(msgspec.Struct, frozen=True):
    """What the console reads of a decision entry (unknown fields ignored)."""

    transaction_id: str
    score: int
    outcome: str
    reasons: list[str] = []
    latency_ms: float = 0.0
    decided_at: str = ""


class LiveTransaction(msgspec.Struct, frozen=True):
    """What the console shows of a flagged decision's transaction."""

    customer_id: str = ""
    amount: float = 0.0
    currency: str = ""
    merchant_id: str = ""
    channel: str = ""


class Flagged(msgspec.Struct, frozen=True):
    """A recent decision other than approve."""

    transaction_id: str
    outcome: str
    score: int
    reasons: list[str]
    decided_at: str
    latency_ms: float
    customer_id: str
    amount: float
    currency: str
    merchant_id: str


class Snapshot(msgspec.Struct, frozen=True):
    """One tick of the console: the series cover the window's complete seconds, oldest
    first; ``null`` where a second had no decision."""

    now: float
    seconds: list[int]
    tps: list[int]
    outcomes: dict[str, list[int]]
    p50: list[float | None]
    p95: list[float | None]
    p99: list[float | None]
    totals: dict[str, int]
    latency: dict[str, float | None]
    scores: list[int]
    recent: list[Flagged]
    decisions: int
    model_version: str
    rules_version: str
    fraud_reported: list[int] = []
    """Per second, fraud labels (chargebacks, analysts' verdicts) that arrived: the fraud
    rate as far as it is known yet (labels come days after their payments)."""
    labels: dict[str, int] = {}
    """Labels that arrived in the window: ``fraud`` and ``genuine``."""
    rule_hits: dict[str, int] = {}
    """Live rules that hit in the window (``rule:<id>`` reasons), most hits first (top
    `TOP_RULES`)."""
    error: str | None = None
    drift: DriftFigures | None = None
    """The live workers' PSI against the model's training reference (`fraudstream.drift`);
    null when no worker scores with a model that has one."""


class Second:
    """The counts of the decisions appended in one second."""

    __slots__ = ("count", "outcomes", "rules", "scores", "latency", "fraud", "genuine")

    def __init__(self) -> None:
        self.fraud = 0
        self.genuine = 0
        self.count = 0
        self.outcomes: dict[str, int] = {}
        self.rules: dict[str, int] = {}
        self.scores = np.zeros(SCORE_BINS, dtype=np.int64)
        self.latency = np.zeros(len(LATENCY_EDGES_MS) + 1, dtype=np.int64)

    def add(self, decision: LiveDecision) -> None:
        self.count += 1
        self.outcomes[decision.outcome] = self.outcomes.get(decision.outcome, 0) + 1
        for reason in decision.reasons:
            if reason.startswith("rule:"):
                self.rules[reason[5:]] = self.rules.get(reason[5:], 0) + 1
        self.scores[min(max(decision.score, 0) // SCORE_BIN, SCORE_BINS - 1)] += 1
        self.latency[bisect_left(LATENCY_EDGES_MS, decision.latency_ms)] += 1


def percentiles(histogram: np.ndarray[Any, Any]) -> list[float | None]:
    """`QUANTILES` of a latency histogram, each the upper edge of its bin (ms).

    >>> h = np.zeros(len(LATENCY_EDGES_MS) + 1, dtype=np.int64)
    >>> for ms in (1.0, 2.0, 3.0, 40.0): h[bisect_left(LATENCY_EDGES_MS, ms)] += 1
    >>> [round(p, 2) for p in percentiles(h)]
    [2.11, 42.17, 42.17]
    """
    total = int(histogram.sum())
    if total == 0:
        return [None] * len(QUANTILES)
    cumulative = np.cumsum(histogram)
    edges = [*LATENCY_EDGES_MS, math.inf]
    found: list[float | None] = []
    for q in QUANTILES:
        index = int(np.searchsorted(cumulative, math.ceil(q * total)))
        found.append(round(min(edges[index], LATENCY_EDGES_MS[-1]), 3))
    return found


class Window:
    """Per-second buckets of the last ``window_s`` seconds, and the latest flagged
    decisions."""

    def __init__(self, window_s: int = WINDOW_S, recent: int = RECENT) -> None:
        self.window_s = window_s
        self.buckets: dict[int, Second] = {}
        self.recent: deque[Flagged] = deque(maxlen=recent)
        self.decisions = 0

    def add(self, at_ms: int, decision: LiveDecision, tx: LiveTransaction | None) -> None:
        second = at_ms // 1000
        bucket = self.buckets.get(second)
        if bucket is None:
            bucket = self.buckets[second] = Second()
        bucket.add(decision)
        self.decisions += 1
        if decision.outcome != "approve":
            self.recent.appendleft(_flagged(decision, tx or LiveTransaction()))

    def add_label(self, at_ms: int, is_fraud: bool) -> None:
        second = at_ms // 1000
        bucket = self.buckets.get(second)
        if bucket is None:
            bucket = self.buckets[second] = Second()
        if is_fraud:
            bucket.fraud += 1
        else:
            bucket.genuine += 1

    def forget_before(self, second: int) -> None:
        for old in [s for s in self.buckets if s < second]:
            del self.buckets[old]

    def snapshot(self, now: float, versions: tuple[str, str]) -> Snapshot:
        """The window's complete seconds up to ``now`` (epoch s)."""
        last = int(now) - 1
        seconds = list(range(last - self.window_s + 1, last + 1))
        self.forget_before(seconds[0])
        buckets = [self.buckets.get(s) or Second() for s in seconds]
        names = sorted({name for b in buckets for name in b.outcomes} | {"approve"})
        per_second = [percentiles(b.latency) for b in buckets]
        latency = sum((b.latency for b in buckets), np.zeros_like(buckets[0].latency))
        overall = percentiles(latency)
        hits: dict[str, int] = {}
        for b in buckets:
            for rule, n in b.rules.items():
                hits[rule] = hits.get(rule, 0) + n
        top = sorted(hits.items(), key=lambda item: (-item[1], item[0]))[:TOP_RULES]
        return Snapshot(
            now=round(now, 3),
            seconds=seconds,
            tps=[b.count for b in buckets],
            outcomes={n: [b.outcomes.get(n, 0) for b in buckets] for n in names},
            p50=[p[0] for p in per_second],
            p95=[p[1] for p in per_second],
            p99=[p[2] for p in per_second],
            totals={n: sum(b.outcomes.get(n, 0) for b in buckets) for n in names},
            latency=dict(zip(("p50", "p95", "p99"), overall, strict=True)),
            scores=[int(n) for n in sum((b.scores for b in buckets), np.zeros(SCORE_BINS))],
            recent=list(self.recent),
            decisions=self.decisions,
            model_version=versions[0],
            rules_version=versions[1],
            rule_hits=dict(top),
            fraud_reported=[b.fraud for b in buckets],
            labels={
                "fraud": sum(b.fraud for b in buckets),
                "genuine": sum(b.genuine for b in buckets),
            },
        )


def _flagged(d: LiveDecision, tx: LiveTransaction) -> Flagged:
    return Flagged(
        d.transaction_id,
        d.outcome,
        d.score,
        d.reasons,
        d.decided_at,
        round(d.latency_ms, 2),
        tx.customer_id,
        tx.amount,
        tx.currency,
        tx.merchant_id,
    )


class LiveLabel(msgspec.Struct, frozen=True):
    """What the console reads of a label entry."""

    is_fraud: bool


_decision = msgspec.json.Decoder(LiveDecision)
_label = msgspec.json.Decoder(LiveLabel)
_transaction = msgspec.json.Decoder(LiveTransaction)


class Follower:
    """Reads ``stream`` into ``window`` from where the last poll stopped (or from the
    window's start). Blocking: call it in a worker thread."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        window: Window,
        clock_ms: Callable[[], int],
        page: int = PAGE,
    ) -> None:
        self.client = client
        self.stream = stream
        self.window = window
        self.clock_ms = clock_ms
        self.page = page
        self.last_id: bytes | None = None
        self.unreadable = 0

    def poll(self) -> int:
        """Files every entry appended since the last poll (up to `POLL_MAX`); returns how
        many were read."""
        read = 0
        while read < POLL_MAX:
            entries: Any = self.client.xrange(self.stream, min=self._start(), count=self.page)
            for entry_id, fields in entries:
                self._file(entry_id, fields)
            read += len(entries)
            if entries:
                self.last_id = entries[-1][0]
            if len(entries) < self.page:
                break
        return read

    def _start(self) -> bytes:
        oldest = self.clock_ms() - self.window.window_s * 1000
        if self.last_id is None or int(self.last_id.split(b"-")[0]) < oldest:
            return b"%d-0" % oldest
        return b"(" + self.last_id

    def _file(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            decision = _decision.decode(fields[PAYLOAD])
            raw_tx = fields.get(TX) if decision.outcome != "approve" else None
            tx = _transaction.decode(raw_tx) if raw_tx else None
        except (KeyError, msgspec.DecodeError):
            self.unreadable += 1  # not a decision entry: nothing the console can show
            return
        self.window.add(int(entry_id.split(b"-")[0]), decision, tx)


class LabelFollower(Follower):
    """Reads the label log (``tx.labels.log``) into the window's fraud counts."""

    def _file(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            label = _label.decode(fields[PAYLOAD])
        except (KeyError, msgspec.DecodeError):
            self.unreadable += 1
            return
        self.window.add_label(int(entry_id.split(b"-")[0]), label.is_fraud)
