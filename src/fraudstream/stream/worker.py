"""The worker: read a batch from owned partitions, score it, write decisions, ack.

The loop reads like a checklist (see `Worker.run`). Delivery is at-least-once; the effect is
exactly-once on one Valkey node because decisions, dead letters, XACK and XDEL of a batch go
out in one MULTI/EXEC, fenced by the leases the batch was read under
(`fraudstream.stream.commit`): a crash before EXEC leaves the whole batch pending (claimed
later by whoever owns the partition), a crash after leaves nothing to redo, and a worker that
stalled past its lease while another took the partition over drops its batch instead of
deciding it a second time. A batch holds at most ``batch_size`` entries however many
partitions the worker owns (`fraudstream.stream.batch`). Given several scorers, a worker
runs one lane per scorer, each with one batch in flight on its own share of the partitions
(`fraudstream.stream.lanes`): one lane computes while another waits on the server. The lanes
beyond the first open while a backlog lasts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
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
from fraudstream.stream.lanes import Gate, Width
from fraudstream.stream.leases import LeaseManager
from fraudstream.stream.relay import ClusterCommitter

TRANSIENT: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.exceptions.ClusterError,  # a failover under way: a slot without a primary
    redis.exceptions.SlotNotCoveredError,
)
"""Errors after which the worker waits and goes on: the server comes back, or a cluster
replica takes over."""

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
    widened: int = 0
    """Times the lanes beyond the first opened for a backlog (`fraudstream.stream.lanes`)."""
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


class Lane:
    """One batch in flight: a share of the worker's partitions, read by its reader, scored by
    its scorer, written by its committer (`fraudstream.stream.lanes`)."""

    def __init__(self, worker: Worker, index: int, lanes: int, scorer: Scorer) -> None:
        options = worker.options
        self.index = index
        self.scorer = scorer
        self.reader = BatchReader(
            worker.client,
            worker.keys,
            worker.leases,
            batch_size=options.batch_size,
            block_ms=options.block_ms,
            claim_idle_ms=options.claim_idle_ms,
            lane=index,
            lanes=lanes,
        )
        commits = ClusterCommitter if worker.keys.cluster else Committer
        self.committer = commits(
            worker.client,
            worker.keys,
            decisions_maxlen=options.decisions_maxlen,
            lease_ttl_ms=options.lease_ttl_ms,
            decision_ttl_s=options.decision_ttl_s,
        )
        self.claiming = False
        """Look for stale pending entries before new ones (set by each rebalance)."""


class Worker(TwoStageStop):
    """One consumer of the ``scorers`` group; one lane per scorer given (one: a single
    batch in flight)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        scorer: Scorer | Sequence[Scorer],
        options: WorkerOptions,
        *,
        consumer: str | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        scorers = [scorer] if isinstance(scorer, Scorer) else list(scorer)
        if not scorers:
            raise ValueError("a worker needs a scorer")
        self.client = client
        self.monitor = monitor
        self.keys = keys
        self.scorer = scorers[0]
        self.options = options
        self.consumer = consumer or consumer_name()
        self.leases = LeaseManager(client, keys, self.consumer, options.lease_ttl_ms)
        self.width = Width(len(scorers), options.batch_size)
        self.lanes = [Lane(self, i, self.width.open, s) for i, s in enumerate(scorers)]
        self.stats = WorkerStats()
        self._gate = Gate()
        self._opened = threading.Event()
        """Set while the lanes beyond the first are open: closed ones wait on it."""
        self._lock = threading.Lock()
        """Guards `stats` and the monitor's `Monitor.decided` (lanes decide side by side)."""
        self._stopping = False
        self._failure: BaseException | None = None

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self, *, max_messages: int | None = None, burst: bool = False, handle_signals: bool = True
    ) -> WorkerStats:
        """Work until asked to stop (signal), ``max_messages`` are done, or, with ``burst``,
        until every input partition is drained (by us or by other workers). Lane 0 runs
        here, with the heartbeat; the other lanes in threads."""
        self.bootstrap()
        if handle_signals:
            self.install_signal_handlers()
        if self.monitor is not None:
            self.monitor.started(self)
        self._stopping, self._failure = False, None
        threads = [  # daemons: a second signal exits without waiting for them
            threading.Thread(
                target=self._lane_thread, args=(lane, max_messages, burst), daemon=True
            )
            for lane in self.lanes[1:]
        ]
        for thread in threads:
            thread.start()
        finished = False
        try:
            self._work(self.lanes[0], max_messages, burst)
            finished = True
        finally:
            self._stopping = True
            if finished:  # not on an error or a second signal: those exit now
                for thread in threads:
                    thread.join()
            self.teardown()
        if self._failure is not None:
            raise self._failure
        return self.stats

    def _lane_thread(self, lane: Lane, max_messages: int | None, burst: bool) -> None:
        try:
            self._work(lane, max_messages, burst)
        except BaseException as exc:  # the worker stops, and run() raises it
            self._failure = exc
            self._stopping = True

    def _work(self, lane: Lane, max_messages: int | None, burst: bool) -> None:
        """A lane's loop; lane 0's also heartbeats and ticks the monitor."""
        main = lane.index == 0
        backoff = 0.1
        while not (self.stop_requested or self._stopping):
            try:
                if main:
                    self.heartbeat()
                elif not lane.reader.has_share():  # closed, or no partition for it: wait
                    # outside the gate, or the heartbeat would wait for this lane's empty
                    # read (`block_ms`) and hold the open lanes back meanwhile (a p99 of
                    # ~150 ms in the demo)
                    if lane.index >= lane.reader.lanes:
                        self._opened.wait(self.options.block_ms / 1000)
                    else:
                        time.sleep(self.options.block_ms / 1000)
                    if burst and self.drained():
                        break
                    continue
                with self._gate.batch():
                    batch = self.next_batch(lane)
                    if batch.entries:
                        self.process(batch, lane)
                if main:
                    self._widen_or_narrow(len(batch.entries))
                if not batch.entries and burst and self.drained():
                    break
                if main and self.monitor is not None:
                    self.monitor.tick(self)
                backoff = 0.1
            except FeatureStoreError as exc:
                with self._lock:
                    self.stats.retried_batches += 1
                log.warning("batch left pending for retry: %s", exc)
                time.sleep(min(backoff, 1.0))
            except TRANSIENT as exc:
                log.warning("valkey unreachable (%s); retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            if max_messages is not None and self.stats.processed >= max_messages:
                break

    def bootstrap(self) -> None:
        """Create the consumer group on every partition and on the labels stream (from the
        start of each stream)."""
        for stream in [*self.keys.inputs(), self.keys.labels]:
            ensure_group(self.client, stream, GROUP)

    def heartbeat(self) -> None:
        """Every third of the lease TTL: keep our leases, take free ones, and look again for
        entries a dead or stalled consumer left pending in our partitions. Between batches:
        it waits for the lanes' batches in hand (`Gate.alone`)."""
        if self.leases.due():
            with self._gate.alone():
                taken = self.leases.rebalance()
                self.lanes[0].committer.recover(taken)  # a cluster's outboxes left unrelayed
                for lane in self.lanes:
                    lane.claiming = True

    def _widen_or_narrow(self, size: int) -> None:
        """After a batch of the first lane: open the other lanes for a backlog, or close them
        once it is drained (`Width`). Alone, between batches, as the heartbeat: the
        partitions are shared anew while no lane has any of their entries in hand."""
        opened = self.width.observe(size)
        if opened is None:
            return
        with self._gate.alone():
            for lane in self.lanes:
                lane.reader.lanes = opened
                lane.claiming = True
        if opened > 1:
            with self._lock:
                self.stats.widened += 1
            self._opened.set()
        else:
            self._opened.clear()
        log.info("%d lane(s) open", opened)

    def next_batch(self, lane: Lane | None = None) -> Batch:
        """Stale pending entries first, as they are older; claiming goes on batch after batch
        until a claim comes back empty, then new entries are read (default: lane 0's)."""
        lane = lane or self.lanes[0]
        if lane.claiming:
            batch = lane.reader.claim()
            if batch.entries:
                with self._lock:
                    self.stats.claimed += len(batch.entries)
                return batch
            lane.claiming = False
        return lane.reader.read()

    def drained(self) -> bool:
        """True when no input entry is left anywhere: processed entries are deleted, so an
        input stream's length is exactly what is unread or pending."""
        pipe = self.client.pipeline(transaction=False)
        for stream in [*self.keys.inputs(), self.keys.labels]:
            pipe.xlen(stream)
        return not any(pipe.execute())

    # --- one batch --------------------------------------------------------------------------

    def process(self, batch: Batch, lane: Lane | None = None) -> None:
        """Decode, apply labels, score, then write decisions + dead letters + acks in one
        MULTI/EXEC, if the leases the batch was read under still stand. If the feature store
        fails, nothing is acked: the batch stays pending and is retried (by us, or by whoever
        owns the partition next). If a lease was lost, the batch is dropped (`_drop`).
        ``lane``: whose scorer and committer (default: lane 0's)."""
        lane = lane or self.lanes[0]
        decoded = self._decode(batch.entries, lane.scorer)
        scored = lane.scorer.score_explained(decoded.good, decoded.arrived, decoded.labels)
        decisions = scored.decisions
        committed = lane.committer.commit(
            batch,
            decisions,
            decoded.dead,
            decoded.payloads,
            scored.explanations,
            decoded.streams,
        )
        if not committed:
            self._drop(batch)
            return
        with self._lock:
            self._count(decisions, len(decoded.dead))
            if self.monitor is not None:
                self.monitor.decided(decisions, len(decisions) + len(decoded.dead))
            self.stats.labels += len(decoded.labels)

    def _decode(self, entries: list[Entry], scorer: Scorer) -> _Decoded:
        decoded = _Decoded()
        for stream, entry_id, fields in entries:
            payload = fields.get(PAYLOAD, b"")
            try:
                if stream == self.keys.labels:
                    label = decode_label(payload_of(fields))
                    scorer.validate_label(label)
                    decoded.labels.append(label)
                    continue
                tx = decode_transaction(payload_of(fields))
                scorer.validate(tx)
                decoded.good.append(tx)
                decoded.streams.append(stream)
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
        with self._lock:
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
    streams: list[str] = field(default_factory=list)
    """The input stream of each good transaction."""
    payloads: dict[str, bytes] = field(default_factory=dict)
    """Each good transaction's payload as received (streamed beside its decision)."""
    arrived: list[float] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _enqueued_at(entry_id: bytes) -> float:
    """Epoch seconds at which the server stored the entry (the ms part of its id)."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


WorkerFactory = Callable[[], Worker]
