"""The SQL sink: its own consumer group on ``tx.decisions`` and on the label log
(``tx.labels.log``), batched idempotent writes, XACK after the commit. A ``review`` decision
opens its review, a ``step_up`` decision its challenge, in the same database transaction; a
challenge's final decision is already stored by whoever closed the challenge (its row holds
the final outcome; `fraudstream.challenges`), so the sink only counts it. Between batches,
every ``sweep_s``, the sink closes the challenges whose time is up and streams their finals.

The loop reads like a checklist (`Sink.run`): bootstrap (migrate the schema, create the
group), then read a batch → store it in one database transaction → ack. Delivery is
at-least-once and the writes are idempotent (`fraudstream.store.write`), so every crash point
is safe: before the commit nothing is stored and the entries stay pending (this consumer
reads its own pending entries first when it comes back; another sink claims them after
``claim_idle_ms``); after the commit and before the XACK, the re-delivered rows already
exist and are skipped.

A database that is down or locked does not lose the batch in hand: the sink keeps it and
retries with capped backoff while its lag (`fraudstream.store.lag`) grows, then catches up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis
import sqlalchemy as sa

from fraudstream.challenges import ChallengeDesk, is_final
from fraudstream.errors import SchemaError, StoreError
from fraudstream.schema import (
    Decision,
    Explanation,
    Label,
    Transaction,
    decode_label,
    decode_transaction,
)
from fraudstream.store import migrate
from fraudstream.store.challenges import open_challenges
from fraudstream.store.engine import describe, first_line
from fraudstream.store.lag import Lag, as_text, measure
from fraudstream.store.reviews import open_reviews
from fraudstream.store.write import store_decisions, store_labels, store_transactions
from fraudstream.stream.consumer import (
    DeadLetter,
    TwoStageStop,
    dead_letter,
    ensure_group,
    host_consumer,
)
from fraudstream.stream.keys import EXPLAIN, PAYLOAD, TX, StreamKeys

log = logging.getLogger(__name__)

SINK_GROUP = "sink"
StreamEntry = tuple[str, bytes, dict[bytes, bytes]]
"""(stream, entry id, fields)."""
Start = bytes | str
_decoder = msgspec.json.Decoder(Decision)
_explained = msgspec.json.Decoder(Explanation).decode


@dataclass
class SinkStats:
    stored: int = 0
    """Decisions written (new rows)."""
    transactions: int = 0
    """Transactions written (new rows), from the decision entries that carry them."""
    duplicates: int = 0
    """Decisions delivered again and already stored (skipped by the database)."""
    dead_lettered: int = 0
    batches: int = 0
    db_retries: int = 0
    """Attempts that failed because the database was down or locked."""
    claimed: int = 0
    reviews_opened: int = 0
    """Reviews queued for the ``review`` decisions stored (`fraudstream.store.reviews`)."""
    labels_stored: int = 0
    """Labels written (new rows; one per transaction and source)."""
    challenges_opened: int = 0
    """Challenges opened for the ``step_up`` decisions stored (`fraudstream.challenges`)."""
    finals: int = 0
    """Final decisions of closed challenges seen (stored with their challenge)."""
    lag: Lag | None = None
    """As measured at the last progress tick."""
    lost: int = 0
    """Decisions trimmed from the stream before they were stored, as far as seen: the count
    is visible only while the sink is behind the trimmed part (from the start, or a stall),
    so it is the largest ``lag.trimmed`` measured, a lower bound."""


@dataclass(frozen=True)
class SinkOptions:
    batch_size: int = 1000
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    progress_s: float = 5.0
    max_backoff_s: float = 5.0
    challenge_ttl_s: int = 300
    challenge_attempts: int = 3
    sweep_s: float = 1.0
    """How often the challenges whose time is up are closed (with a `ChallengeDesk`)."""
    linger_ms: int = 0
    """After a read of new entries that came back short of a full batch, the next read of
    new entries waits until this long after it (see `Sink.next_batch`)."""


YOUNG_GC_THRESHOLD = 50_000
"""Young-generation collections for a process that runs a sink (`fraudstream.gcpolicy`).

A batch of 1,000 decisions allocates some 5,000 container objects (the entries' dicts, the
decisions, their lists, the rows), so Python's default, a young-generation collection every
700 allocations, collects several times per batch and finds nothing: what the sink makes
holds no cycles and is freed by reference counting. With this and start-up frozen, the rate
gains a third or more (``bench_sink.py``)."""


@dataclass
class _Batch:
    ids: dict[str, list[bytes]] = field(default_factory=dict)
    """Per stream, the entries read (empty: nothing was read)."""
    decisions: list[Decision] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    explanations: dict[str, Explanation] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)


class Sink(TwoStageStop):
    """One consumer of the ``sink`` group on ``{prefix}.decisions`` and
    ``{prefix}.labels.log``."""

    def __init__(
        self,
        client: redis.Redis,
        engine: sa.Engine,
        keys: StreamKeys,
        options: SinkOptions,
        *,
        consumer: str | None = None,
        on_progress: Callable[[SinkStats, float], None] | None = None,
        challenges: ChallengeDesk | None = None,
    ) -> None:
        self.client = client
        self.challenges = challenges
        self.engine = engine
        self.keys = keys
        self.options = options
        self.consumer = consumer or host_consumer(SINK_GROUP)
        self.on_progress = on_progress
        self.stats = SinkStats()
        self.streams = (keys.decisions, keys.label_log)
        self._pending_from: dict[str, Start] = dict.fromkeys(self.streams, "0")
        """Per stream, where the sweep of our own pending entries goes on (none: done)."""
        self._claim_from: dict[str, Start] = dict.fromkeys(self.streams, "0-0")
        self._migrated = False
        self._next_claim = 0.0
        self._next_progress = 0.0
        self._next_sweep = 0.0
        self._next_read = 0.0
        self._linger_s = 0.0

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, burst: bool = False, handle_signals: bool = True) -> SinkStats:
        """Store decisions and labels until asked to stop (signal), or, with ``burst``,
        until every entry of both streams is stored.

        The next batch is read while the current one is written (one reader thread): the
        database and Valkey then work at the same time, and the drivers release the GIL
        while they wait. A batch read ahead and not stored when the sink stops stays pending,
        and is the first thing read on the next start."""
        self.bootstrap()
        if handle_signals:
            self.install_signal_handlers()
        self._linger_s = 0.0 if burst else self.options.linger_ms / 1000
        backoff = 0.1
        started = time.monotonic()
        self.progress(started, force=True)  # the lag at start, before any read
        ahead: Future[_Batch] | None = None
        with ThreadPoolExecutor(1, thread_name_prefix="sink-read") as reader:
            while not self.stop_requested:
                try:
                    fetched, ahead = ahead, None
                    batch = fetched.result() if fetched else self.next_batch()
                    if batch.ids:
                        ahead = reader.submit(self.next_batch)
                        self.process(batch)
                    elif burst and self.caught_up():
                        break
                    self.sweep()
                    self.progress(started)
                    backoff = 0.1
                except redis.ConnectionError as exc:
                    log.warning("valkey unreachable (%s); retrying in %.1fs", exc, backoff)
                    self._reread_pending(ahead)
                    ahead = None
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.options.max_backoff_s)
        try:
            self.progress(started, force=True)
        except redis.RedisError as exc:
            log.warning("could not measure the final lag: %s", exc)
        return self.stats

    def _reread_pending(self, ahead: Future[_Batch] | None) -> None:
        """After a lost connection, what we read and did not ack (a batch stored but not
        acked, a batch read ahead) is read again from our pending entries, at once rather
        than after ``claim_idle_ms``. A read-ahead still running is let finish first."""
        if ahead is not None:
            wait([ahead])
        self._pending_from = dict.fromkeys(self.streams, "0")

    def bootstrap(self) -> None:
        """Migrate the schema to the newest revision, then create the groups (from the start
        of each stream: a new store takes every entry the streams still hold). A database
        that is down at start is waited for, like one that goes down later."""
        if not self._migrated:
            self._migrated = self._until_available(lambda: migrate.upgrade(self.engine))
        self._pending_from = dict.fromkeys(self.streams, "0")
        for stream in self.streams:
            ensure_group(self.client, stream, SINK_GROUP)

    def next_batch(self) -> _Batch:
        """Our own pending entries first (a previous run of this consumer died holding them),
        then, every ``claim_idle_ms``, entries another sink left pending, then new ones.

        Both sweeps go on from where the previous batch ended: the batch being written while
        this one is read is still pending, and must not be read twice. Each stream is swept
        on its own; new entries of both come in one read.

        A read of new entries that came back short of a full batch means the sink keeps up;
        the next one then waits out ``linger_ms`` from it, so a trickle of decisions is
        stored in batches of what came in meanwhile rather than a database transaction
        for every few: at 2,000 decisions/s in batches of ~20 the sink took 40 % of a core
        (a quarter of the machine beside the workers it shares it with), the fixed cost of
        a transaction and a read paid for each. A backlog is read in full batches, with no
        wait. The cost: a decision reaches the store up to ``linger_ms`` later."""
        if self._pending_from:
            entries, last = self._read(self._pending_from)
            self._pending_from = {s: last[s] for s in self._pending_from if s in last}
            if last:
                return self._decode(entries)
        if time.monotonic() >= self._next_claim:
            entries = self._claim_all()
            if entries:
                self.stats.claimed += len(entries)
                return self._decode(entries)
            if all(start in (b"0-0", "0-0") for start in self._claim_from.values()):
                self._next_claim = time.monotonic() + self.options.claim_idle_ms / 1000
        self._linger()
        entries = self._read(dict.fromkeys(self.streams, ">"))[0]
        if len(entries) < self.options.batch_size:
            self._next_read = time.monotonic() + self._linger_s
        else:
            self._next_read = 0.0
        return self._decode(entries)

    def _linger(self) -> None:
        wait = self._next_read - time.monotonic()
        if wait > 0 and not self.stop_requested:
            time.sleep(wait)

    def _read(self, starts: dict[str, Start]) -> tuple[list[StreamEntry], dict[str, bytes]]:
        """Entries from each stream's start (``>``: new ones), and per stream the last id read
        (absent: none). A pending entry the stream's trim removed comes back empty: it is
        acked, and lost."""
        new = all(start == ">" for start in starts.values())
        reply: Any = self.client.xreadgroup(
            SINK_GROUP,
            self.consumer,
            starts,  # type: ignore[arg-type]
            count=self.options.batch_size,
            block=self.options.block_ms if new else None,
        )
        got = [(as_text(stream), i, f) for stream, entries in reply or [] for i, f in entries]
        last = {stream: i for stream, i, _ in got}
        gone = [(stream, i) for stream, i, f in got if f is None]
        if gone:
            log.warning("%d pending entries were trimmed before they were stored", len(gone))
            for stream, i in gone:
                self.client.xack(stream, SINK_GROUP, i)
        return [(stream, i, f) for stream, i, f in got if f is not None], last

    def _claim_all(self) -> list[StreamEntry]:
        entries: list[StreamEntry] = []
        for stream in self.streams:
            got, self._claim_from[stream] = self._claim(stream, self._claim_from[stream])
            entries += got
        return entries

    def _claim(self, stream: str, start: Start) -> tuple[list[StreamEntry], Start]:
        """Entries idle for ``claim_idle_ms`` from ``start`` on, and where to go on from.
        (The server drops trimmed entries from the pending list itself.)"""
        reply: Any = self.client.xautoclaim(
            stream,
            SINK_GROUP,
            self.consumer,
            self.options.claim_idle_ms,
            start_id=start,
            count=self.options.batch_size,
        )
        return [(stream, i, f) for i, f in reply[1] if f is not None], reply[0]

    def caught_up(self) -> bool:
        for stream in self.streams:
            measured = measure(self.client, stream, SINK_GROUP)
            if measured.unread != 0 or measured.pending != 0:
                return False
        return True

    # --- one batch --------------------------------------------------------------------------

    def process(self, batch: _Batch) -> None:
        """Store the batch (retrying while the database is unavailable), then ack it and
        dead-letter what could not be decoded, in one MULTI/EXEC."""
        if not self._store(batch):
            return  # stop requested while the database was down: the batch stays pending
        self._ack(batch)
        self.stats.batches += 1
        self.stats.dead_lettered += len(batch.dead)

    def _ack(self, batch: _Batch) -> None:
        pipe = self.client.pipeline(transaction=True)
        for record in batch.dead:
            pipe.xadd(self.keys.deadletter, record)
        for stream, ids in batch.ids.items():
            pipe.xack(stream, SINK_GROUP, *ids)
        pipe.execute()

    def _store(self, batch: _Batch) -> bool:
        firsts = [d for d in batch.decisions if not is_final(d)]
        o = self.options

        def write() -> None:
            with self.engine.begin() as connection:
                txs = store_transactions(connection, batch.transactions)
                new = store_decisions(connection, firsts, batch.explanations)
                opened = open_reviews(connection, firsts)
                challenged = open_challenges(
                    connection, firsts, o.challenge_ttl_s, o.challenge_attempts
                )
                labelled = store_labels(connection, batch.labels)
            self.stats.stored += new
            self.stats.transactions += txs
            self.stats.reviews_opened += opened
            self.stats.challenges_opened += challenged
            self.stats.labels_stored += labelled
            self.stats.duplicates += len(firsts) - new
            self.stats.finals += len(batch.decisions) - len(firsts)

        return self._until_available(write)

    def _until_available(self, action: Callable[[], object]) -> bool:
        """Run ``action`` until the database lets it through; False if asked to stop first.
        Only unavailability is retried (down, unreachable, locked); any other error is a bug
        or a schema mismatch, and stops the sink."""
        backoff = 0.1
        while True:
            try:
                action()
                return True
            except (sa.exc.OperationalError, sa.exc.InterfaceError, StoreError) as exc:
                if isinstance(exc, StoreError) and not _unavailable(exc.__cause__):
                    raise
                self.stats.db_retries += 1
                log.warning(
                    "database %s unavailable (%s); retrying in %.1fs",
                    describe(self.engine),
                    first_line(exc),
                    backoff,
                )
                if self.stop_requested:
                    return False
                time.sleep(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_s)

    def _decode(self, entries: list[StreamEntry]) -> _Batch:
        batch = _Batch()
        for stream, entry_id, fields in entries:
            batch.ids.setdefault(stream, []).append(entry_id)
            payload = fields.get(PAYLOAD, b"")
            try:
                if stream == self.keys.label_log:
                    batch.labels.append(decode_label(payload))
                    continue
                batch.decisions.append(_decoder.decode(payload))
            except (msgspec.MsgspecError, SchemaError) as exc:
                batch.dead.append(dead_letter(stream, entry_id, payload, f"sink: {exc}"))
                continue
            why = fields.get(EXPLAIN)
            if why is not None:
                try:
                    batch.explanations[batch.decisions[-1].transaction_id] = _explained(why)
                except msgspec.MsgspecError as exc:  # the decision is kept without it
                    reason = f"sink: explanation: {exc}"
                    batch.dead.append(dead_letter(stream, entry_id, why, reason))
            tx = fields.get(TX)
            if tx is None:  # streamed by a release that did not carry it
                continue
            try:
                batch.transactions.append(decode_transaction(tx))
            except SchemaError as exc:  # the decision is kept; its transaction is told of
                batch.dead.append(dead_letter(stream, entry_id, tx, f"sink: transaction: {exc}"))
        return batch

    def sweep(self) -> None:
        """Every ``sweep_s``: close the challenges whose time is up and stream their finals
        (and any final the API stored but could not stream). A database outage here is
        left to the next sweep: the batches go on."""
        now = time.monotonic()
        if self.challenges is None or now < self._next_sweep:
            return
        self._next_sweep = now + self.options.sweep_s
        try:
            self.challenges.sweep()
        except StoreError as exc:
            log.warning("challenge sweep: %s", exc)

    def progress(self, started: float, *, force: bool = False) -> None:
        """Every ``progress_s``: measure the lag and report (the CLI prints a line)."""
        now = time.monotonic()
        if not force and now < self._next_progress:
            return
        self._next_progress = now + self.options.progress_s
        self.stats.lag = measure(self.client, self.keys.decisions, SINK_GROUP)
        self.stats.lost = max(self.stats.lost, self.stats.lag.trimmed)
        if self.on_progress is not None:
            self.on_progress(self.stats, now - started)


def _unavailable(exc: BaseException | None) -> bool:
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)
