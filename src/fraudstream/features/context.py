"""What a batch shares with the engine that runs it, so the dependencies point one way.

`fraudstream.features.online.FeatureEngine` owns one `EngineContext`: its configuration (plan,
namespace, TTL, lateness, cluster or not), its connection, the counters and timings every
batch adds to, and the write still awaiting confirmation. A batch
(`fraudstream.features.batch.BatchRun`, with `fraudstream.features.write.Writer`) is handed
that context, never the engine: ``online`` imports ``batch`` imports ``write`` imports this,
and nothing imports back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fraudstream.features.kernels import SumLayout
from fraudstream.features.layout import KEY_TAG, US, Family, Plan
from fraudstream.features.seen import HashCache
from fraudstream.features.windows import WindowSpec
from fraudstream.features.wire import (
    FeatureStoreError,
    Packed,
    Session,
    StateConflict,
    WatchConflict,
    Wire,
    first_error,
)

log = logging.getLogger(__name__)
NO_WATERMARK = -(1 << 62)
"""The watermark before any transaction ("none yet": far from int64 overflow)."""


@dataclass
class EngineStats:
    processed: int = 0
    duplicates: int = 0
    late: int = 0
    """Older than the customer's newest by more than the lateness, or than all of its full
    history (maybe a redelivery): scored, not stored."""
    reset: int = 0
    """Customers whose stored state was unreadable (another size or layout version: corrupt,
    or left by another release or feature set): scored without history, state started
    afresh (logged)."""
    conflicts: int = 0
    """Batches not stored because another writer changed one of their customers meanwhile
    (`StateConflict`): computed again by their caller."""
    labels_applied: int = 0
    labels_duplicate: int = 0
    labels_late: int = 0
    labels_ignored: int = 0
    """Labels saying "genuine": they change no feature."""


@dataclass
class Batch:
    """Columns of one batch of transactions."""

    ts: NDArray[np.int64]
    cents: NDArray[np.int64]
    amount: NDArray[np.float64]
    channel: NDArray[np.object_]
    ids: dict[str, list[str | None]]
    txid: NDArray[np.uint64]
    loc_sys: NDArray[np.uint8]
    loc_a: NDArray[np.float64]
    loc_b: NDArray[np.float64]


def sum_layout(plan: Plan) -> SumLayout:
    """The families' window outputs stacked in plan order, each ``(aggregates, counters)``
    row-major (`BatchRun._windows`)."""
    rows: dict[str, dict[str, int]] = {}
    at = 0
    for fam in plan.families:
        for agg in fam.aggregates:
            rows[agg.name] = {c: at + j for j, c in enumerate(fam.counters)}
            at += len(fam.counters)
    return SumLayout(rows)


class EngineContext:
    """An engine's configuration and running state, as its batches see them."""

    def __init__(
        self,
        plan: Plan,
        wire: Wire,
        *,
        namespace: str,
        ttl_s: int,
        lateness_s: int,
        cas: bool,
        cluster: bool,
    ) -> None:
        self.plan = plan
        self.wire = wire
        self.namespace = namespace
        self.ttl_s = ttl_s
        self.lateness_us = lateness_s * US
        self.cas = cas
        self.cluster = cluster
        """A cluster client: per-slot commands, see `Writer._write_cluster`."""
        self.wants_known_fraud = any(d.kind.startswith("days_since") for d in plan.features.derived)
        self.stats = EngineStats()
        self.timings: dict[str, float] = {}
        """Seconds spent per phase (columns, read, compute, encode, write), accumulated."""
        self.record_io = False
        self.hashes = HashCache()
        self.window_specs: dict[int, WindowSpec] = {}
        """Family index -> its `WindowSpec` (`BatchRun._windows`)."""
        self.sum_layout = sum_layout(plan)
        """Where `BatchRun._raw` stacks each aggregate's window sums."""
        self.watermark = NO_WATERMARK
        """Newest event time this process has seen: what `FeatureEngine.sweep` deems
        unreachable. Lateness is judged per customer, from its state."""
        self.pending: tuple[Session, int] | None = None
        """The submitted batch's write awaiting `FeatureEngine.confirm`: its session, and
        how many transactions it stores."""
        self.hold_writes = False
        """Keep each batch's write unsent until `FeatureEngine.confirm` (one node only)."""
        self.held: tuple[Session, int, list[Packed]] | None = None
        """The batch's write held for `FeatureEngine.confirm`: its session (holding the
        read's ``WATCH``), how many transactions it stores, its commands."""

    # --- keys -------------------------------------------------------------------------------

    def customer_key(self, customer_id: str) -> str:
        return f"{self.namespace}:{{c:{customer_id}}}"

    def block_key(self, fam: Family, entity_id: str, block: int) -> str:
        return f"{self.namespace}:{{{KEY_TAG[fam.entity]}:{entity_id}}}:{fam.tag}:{block}"

    def known_fraud_key(self, terminal_id: str) -> str:
        return f"{self.namespace}:{{t:{terminal_id}}}:kf"

    def window_spec(self, fam: Family) -> WindowSpec:
        spec = self.window_specs.get(fam.index)
        if spec is None:
            spec = self.window_specs[fam.index] = WindowSpec.of(fam)
        return spec

    # --- outcomes ---------------------------------------------------------------------------

    def tick(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def collect(self, session: Session, stored: int, trailing: int = 0) -> list[Any]:
        """The outcome of a batch's write, the next reply on ``session``; the replies of
        the ``trailing`` commands sent after it in its transaction (`FeatureEngine.confirm`)
        are returned as they came."""
        t = time.perf_counter()
        try:
            replies = session.receive()
        except WatchConflict:
            self.stats.conflicts += 1
            raise StateConflict(
                "customer state (or another watched key) changed by another writer during "
                "the batch; nothing was written (another process scoring the same customer "
                "at the same moment)"
            ) from None
        self.tick("write", t)
        split = len(replies) - trailing
        if (err := first_error(replies[:split])) is not None:
            raise FeatureStoreError(f"writing feature state failed: {err}")
        self.stats.processed += stored
        return replies[split:]

    def count_labels(self, replies: list[Any]) -> None:
        if (err := first_error(replies)) is not None:
            raise FeatureStoreError(f"applying labels failed: {err}")
        applied = sum(1 for r in replies if r == 1)
        self.stats.labels_applied += applied
        self.stats.labels_duplicate += len(replies) - applied

    @staticmethod
    def unreadable(found: list[tuple[str, bytes]], consequence: str) -> None:
        """Log keys whose value could not be read (the batch goes on without them)."""
        shown = ", ".join(f"{key} ({len(raw)} bytes)" for key, raw in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        log.warning(
            "feature state unreadable (corrupt, or left by another release or feature set?),"
            " %s: %s%s",
            consequence,
            shown,
            more,
        )
