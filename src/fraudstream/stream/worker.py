"""The worker: read a batch from owned partitions, score it, write decisions, ack.

The loop reads like a checklist (see `Worker.run`). Delivery is at-least-once; the effect is
exactly-once on one Valkey node because decisions, dead letters, XACK and XDEL of a batch go
out in one MULTI/EXEC: a crash before EXEC leaves the whole batch pending (claimed later by
whoever owns the partition), a crash after leaves nothing to redo.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from fraudstream.errors import SchemaError
from fraudstream.features.wire import FeatureStoreError
from fraudstream.schema import (
    Decision,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
    encode,
)
from fraudstream.scoring import Scorer
from fraudstream.stream.keys import GROUP, PAYLOAD, StreamKeys
from fraudstream.stream.leases import LeaseManager

log = logging.getLogger(__name__)

Entry = tuple[str, bytes, dict[bytes, bytes]]
"""(stream, entry id, fields) of one input message."""


@dataclass
class WorkerStats:
    processed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    claimed: int = 0
    labels: int = 0
    retried_batches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 500
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    lease_ttl_ms: int = 10_000
    decisions_maxlen: int = 1_000_000


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """One consumer of the ``scorers`` group."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        scorer: Scorer,
        options: WorkerOptions,
        *,
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.scorer = scorer
        self.options = options
        self.consumer = consumer or consumer_name()
        self.leases = LeaseManager(client, keys, self.consumer, options.lease_ttl_ms)
        self.stats = WorkerStats()
        self.stop_requested = False
        self._signals = 0

    # --- the loop ---------------------------------------------------------------------------

    def run(
        self, *, max_messages: int | None = None, burst: bool = False, handle_signals: bool = True
    ) -> WorkerStats:
        """Work until asked to stop (signal), ``max_messages`` are done, or, with ``burst``,
        until every input partition is drained (by us or by other workers)."""
        self.bootstrap()
        if handle_signals:
            self.install_signal_handlers()
        backoff = 0.1
        try:
            while not self.stop_requested:
                try:
                    self.heartbeat()
                    entries = self.read()
                    if entries:
                        self.process(entries)
                    elif burst and self.drained():
                        break
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
            try:
                self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """First signal: finish and ack the batch in hand, then exit. Second: exit now."""
        self._signals += 1
        if self._signals > 1:
            raise SystemExit(1)
        self.stop_requested = True

    def heartbeat(self) -> None:
        """Keep leases and, for partitions we own, take over entries a dead consumer left."""
        if not self.leases.due():
            return
        self.leases.rebalance()
        claimed = self.claim_stale()
        if claimed:
            self.stats.claimed += len(claimed)
            self.process(claimed)

    def read(self) -> list[Entry]:
        # Labels are not partitioned: any worker may apply one (applying is idempotent).
        streams: dict[Any, Any] = {self.keys.input(p): ">" for p in sorted(self.leases.owned)}
        streams[self.keys.labels] = ">"
        reply: Any = self.client.xreadgroup(
            GROUP,
            self.consumer,
            streams,
            count=self.options.batch_size,
            block=self.options.block_ms,
        )
        return [
            (_text(stream), entry_id, fields)
            for stream, messages in reply or []
            for entry_id, fields in messages
            if fields is not None
        ]

    def drained(self) -> bool:
        """True when no input entry is left anywhere: processed entries are deleted, so an
        input stream's length is exactly what is unread or pending."""
        pipe = self.client.pipeline(transaction=False)
        for stream in [*self.keys.inputs(), self.keys.labels]:
            pipe.xlen(stream)
        return not any(pipe.execute())

    def claim_stale(self) -> list[Entry]:
        """Entries of our partitions (and of the shared labels stream) that a consumer left
        pending for longer than ``claim_idle_ms``: it died, we take them over."""
        streams = [self.keys.input(p) for p in sorted(self.leases.owned)] + [self.keys.labels]
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xautoclaim(
                stream,
                GROUP,
                self.consumer,
                min_idle_time=self.options.claim_idle_ms,
                start_id="0-0",
                count=self.options.batch_size,
            )
        replies: list[Any] = pipe.execute()
        return [
            (stream, entry_id, fields)
            for stream, reply in zip(streams, replies, strict=True)
            for entry_id, fields in reply[1]
            if fields is not None
        ]

    # --- one batch --------------------------------------------------------------------------

    def process(self, entries: list[Entry]) -> None:
        """Decode, apply labels, score, then write decisions + dead letters + acks in one
        MULTI/EXEC. If the feature store fails, nothing is acked: the batch stays pending
        and is retried (by us, or by whoever owns the partition next)."""
        good: list[Transaction] = []
        arrived: list[float] = []
        labels: list[Label] = []
        dead: list[dict[FieldT, EncodableT]] = []
        for stream, entry_id, fields in entries:
            payload = fields.get(PAYLOAD, b"")
            try:
                if stream == self.keys.labels:
                    label = decode_label(payload)
                    self.scorer.validate_label(label)
                    labels.append(label)
                    continue
                tx = decode_transaction(payload)
                self.scorer.validate(tx)
                good.append(tx)
                arrived.append(_enqueued_at(entry_id))
            except SchemaError as exc:
                dead.append(_dead_letter(stream, entry_id, payload, exc.field, str(exc)))
        decisions = self.scorer.score_batch(good, arrived, labels)
        self._commit(entries, decisions, dead)
        self._count(decisions, len(dead))
        self.stats.labels += len(labels)

    def _commit(
        self, entries: list[Entry], decisions: list[Decision], dead: list[dict[FieldT, EncodableT]]
    ) -> None:
        pipe = self.client.pipeline(transaction=True)
        for decision in decisions:
            pipe.xadd(
                self.keys.decisions,
                {PAYLOAD: encode(decision)},
                maxlen=self.options.decisions_maxlen,
                approximate=True,
            )
        for record in dead:
            pipe.xadd(self.keys.deadletter, record)
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
        pipe.execute()

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _enqueued_at(entry_id: bytes) -> float:
    """Epoch seconds at which the server stored the entry (the ms part of its id)."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


def _dead_letter(
    stream: str, entry_id: bytes, payload: bytes, field_name: str, reason: str
) -> dict[FieldT, EncodableT]:
    return {
        "reason": reason,
        "field": field_name,
        "stream": stream,
        "entry_id": entry_id,
        "payload": payload,
        "at_ms": int(time.time() * 1000),
    }


WorkerFactory = Callable[[], Worker]
