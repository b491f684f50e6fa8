"""The worker: read a batch from owned partitions, score it, write decisions, ack.

The loop reads like a checklist (see `Worker.run`). Delivery is at-least-once; the effect is
exactly-once on one Valkey node because decisions, dead letters, XACK and XDEL of a batch go
out in one MULTI/EXEC, fenced by the leases the batch was read under
(`fraudstream.stream.commit`): a crash before EXEC leaves the whole batch pending (claimed
later by whoever owns the partition), a crash after leaves nothing to redo, and a worker that
stalled past its lease while another took the partition over drops its batch instead of
deciding it a second time. A batch holds at most ``batch_size`` entries however many
partitions the worker owns (`fraudstream.stream.batch`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis

from fraudstream.errors import SchemaError
from fraudstream.features.wire import FeatureStoreError
from fraudstream.schema import (
    Decision,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
)
from fraudstream.scoring import Scorer
from fraudstream.stream.batch import Batch, BatchReader, Entry
from fraudstream.stream.commit import Committer
from fraudstream.stream.consumer import (
    DeadLetter,
    TwoStageStop,
    dead_letter,
    ensure_group,
    payload_of,
)
from fraudstream.stream.decided import DEFAULT_TTL_S
from fraudstream.stream.keys import GROUP, PAYLOAD, StreamKeys
from fraudstream.stream.leases import LeaseManager

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    processed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    claimed: int = 0
    labels: int = 0
    retried_batches: int = 0
    dropped_batches: int = 0
    """Batches given up because a lease was lost while they were in hand (see `_drop`)."""
    dropped: int = 0
    """Entries in those batches: decided by the partition's new owner, not by us."""
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 500
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    lease_ttl_ms: int = 10_000
    decisions_maxlen: int = 1_000_000
    decision_ttl_s: int = DEFAULT_TTL_S
    """How long a decision is kept by transaction id (`fraudstream.stream.decided`)."""


class Monitor(Protocol):
    """Watches a worker from inside its loop, between batches (see
    `fraudstream.stream.report.IntervalReporter`)."""

    def started(self, worker: Worker) -> None: ...

    def decided(self, decisions: Sequence[Decision], entries: int) -> None: ...

    def tick(self, worker: Worker) -> None: ...


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker(TwoStageStop):
    """One consumer of the ``scorers`` group."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        scorer: Scorer,
        options: WorkerOptions,
        *,
        consumer: str | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.client = client
        self.monitor = monitor
        self.keys = keys
        self.scorer = scorer
        self.options = options
        self.consumer = consumer or consumer_name()
        self.leases = LeaseManager(client, keys, self.consumer, options.lease_ttl_ms)
        self.reader = BatchReader(
            client,
            keys,
            self.leases,
            batch_size=options.batch_size,
            block_ms=options.block_ms,
            claim_idle_ms=options.claim_idle_ms,
        )
        self.committer = Committer(
            client,
            keys,
            decisions_maxlen=options.decisions_maxlen,
            lease_ttl_ms=options.lease_ttl_ms,
            decision_ttl_s=options.decision_ttl_s,
        )
        self.stats = WorkerStats()
        self._claiming = False

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self, *, max_messages: int | None = None, burst: bool = False, handle_signals: bool = True
    ) -> WorkerStats:
        """Work until asked to stop (signal), ``max_messages`` are done, or, with ``burst``,
        until every input partition is drained (by us or by other workers)."""
        self.bootstrap()
        if handle_signals:
            self.install_signal_handlers()
        if self.monitor is not None:
            self.monitor.started(self)
        backoff = 0.1
        try:
            while not self.stop_requested:
                try:
                    self.heartbeat()
                    batch = self.next_batch()
                    if batch.entries:
                        self.process(batch)
                    elif burst and self.drained():
                        break
                    if self.monitor is not None:
                        self.monitor.tick(self)
                    backoff = 0.1
                except FeatureStoreError as exc:
                    self.stats.retried_batches += 1
                    log.warning("batch left pending for retry: %s", exc)
                    time.sleep(min(backoff, 1.0))
                except redis.ConnectionError as exc:
                    log.warning("valkey unreachable (%s); retrying in %.1fs", exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                if max_messages is not None and self.stats.processed >= max_messages:
                    break
        finally:
            self.teardown()
        return self.stats

    def bootstrap(self) -> None:
        """Create the consumer group on every partition and on the labels stream (from the
        start of each stream)."""
        for stream in [*self.keys.inputs(), self.keys.labels]:
            ensure_group(self.client, stream, GROUP)

    def heartbeat(self) -> None:
        """Every third of the lease TTL: keep our leases, take free ones, and look again for
        entries a dead or stalled consumer left pending in our partitions."""
        if self.leases.due():
            self.leases.rebalance()
            self._claiming = True

    def next_batch(self) -> Batch:
        """Stale pending entries first, as they are older; claiming goes on batch after batch
        until a claim comes back empty, then new entries are read."""
        if self._claiming:
            batch = self.reader.claim()
            if batch.entries:
                self.stats.claimed += len(batch.entries)
                return batch
            self._claiming = False
        return self.reader.read()

    def drained(self) -> bool:
        """True when no input entry is left anywhere: processed entries are deleted, so an
        input stream's length is exactly what is unread or pending."""
        pipe = self.client.pipeline(transaction=False)
        for stream in [*self.keys.inputs(), self.keys.labels]:
            pipe.xlen(stream)
        return not any(pipe.execute())

    # --- one batch --------------------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        """Decode, apply labels, score, then write decisions + dead letters + acks in one
        MULTI/EXEC, if the leases the batch was read under still stand. If the feature store
        fails, nothing is acked: the batch stays pending and is retried (by us, or by whoever
        owns the partition next). If a lease was lost, the batch is dropped (`_drop`)."""
        decoded = self._decode(batch.entries)
        decisions = self.scorer.score_batch(decoded.good, decoded.arrived, decoded.labels)
        if not self.committer.commit(batch, decisions, decoded.dead, decoded.payloads):
            self._drop(batch)
            return
        self._count(decisions, len(decoded.dead))
        if self.monitor is not None:
            self.monitor.decided(decisions, len(decisions) + len(decoded.dead))
        self.stats.labels += len(decoded.labels)

    def _decode(self, entries: list[Entry]) -> _Decoded:
        decoded = _Decoded()
        for stream, entry_id, fields in entries:
            payload = fields.get(PAYLOAD, b"")
            try:
                if stream == self.keys.labels:
                    label = decode_label(payload_of(fields))
                    self.scorer.validate_label(label)
                    decoded.labels.append(label)
                    continue
                tx = decode_transaction(payload_of(fields))
                self.scorer.validate(tx)
                decoded.good.append(tx)
                decoded.payloads[tx.transaction_id] = payload
                decoded.arrived.append(_enqueued_at(entry_id))
            except SchemaError as exc:
                decoded.dead.append(dead_letter(stream, entry_id, payload, str(exc), exc.field))
        return decoded

    def _drop(self, batch: Batch) -> None:
        """A lease of the batch was lost while it was in hand (a stall longer than the TTL)
        and the partition taken by another worker, which claims and decides these entries.
        Nothing of the batch was written or acked. Its feature updates were made, but the
        feature state ignores a transaction or label it has already counted, so the new
        owner's scoring changes nothing there. The next heartbeat comes before the next
        read, so that we read no more from partitions that are no longer ours."""
        self.stats.dropped_batches += 1
        self.stats.dropped += len(batch.entries)
        log.warning(
            "batch of %d entries dropped: a lease it was read under was lost (partitions %s)",
            len(batch.entries),
            ", ".join(str(lease.partition) for lease in batch.leases),
        )
        self.leases.beat_now()

    def _count(self, decisions: list[Decision], dead: int) -> None:
        self.stats.batches += 1
        self.stats.processed += len(decisions) + dead
        self.stats.dead_lettered += dead
        for d in decisions:
            self.stats.outcomes[d.outcome] = self.stats.outcomes.get(d.outcome, 0) + 1

    def teardown(self) -> None:
        try:
            self.leases.release_all()
        except redis.RedisError as exc:  # leases expire on their own
            log.warning("could not release leases: %s", exc)


@dataclass
class _Decoded:
    """A batch's entries sorted out: transactions to score, labels, dead letters."""

    good: list[Transaction] = field(default_factory=list)
    payloads: dict[str, bytes] = field(default_factory=dict)
    """Each good transaction's payload as received (streamed beside its decision)."""
    arrived: list[float] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _enqueued_at(entry_id: bytes) -> float:
    """Epoch seconds at which the server stored the entry (the ms part of its id)."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


WorkerFactory = Callable[[], Worker]
