"""`fraudstream alerts run`: its own consumer group (``alerts``) on ``tx.decisions``, never in
the scoring path.

The loop reads like the SQL sink's (`fraudstream.store.sink`): bootstrap (migrate the
store, create the group), then read a batch (own pending entries first, then entries another
alerts consumer left idle, then new ones: `GroupReader`) → route each decision → look the batch's
transactions and customers up in the store (one round) → claim the alerts in the delivery
log → send them, concurrently, each with its retries → log the outcome → dead-letter what
failed → XACK. A Valkey or database outage keeps the batch pending and is retried with
capped backoff; the delivery log makes the second pass skip what already went out.

A stop (first SIGTERM / Ctrl-C) lets the sends in flight end but cuts a retry's backoff
short: the batch is then not acked, its unsent alerts stay ``pending``, and the next start
sends them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType

import msgspec
import redis
import sqlalchemy as sa

from fraudstream.alerts import deliveries
from fraudstream.alerts.channels import Channel
from fraudstream.alerts.context import look_up
from fraudstream.alerts.payload import Alert, Decided, make_alert
from fraudstream.alerts.retry import RetryPolicy, with_retries
from fraudstream.alerts.routing import ChannelName, Routes
from fraudstream.challenges import Codes, is_final
from fraudstream.store import migrate
from fraudstream.store.engine import first_line
from fraudstream.store.lag import Lag, measure
from fraudstream.stream.consumer import (
    DeadLetter,
    Entry,
    GroupReader,
    TwoStageStop,
    dead_letter,
    ensure_group,
    host_consumer,
)
from fraudstream.stream.keys import PAYLOAD, TX, StreamKeys

log = logging.getLogger(__name__)

ALERTS_GROUP = "alerts"
_decoder = msgspec.json.Decoder(Decided)


class _TxFacts(msgspec.Struct, frozen=True):
    """What an alert needs of the transaction streamed beside its decision."""

    customer_id: str | None = None
    amount: float | None = None
    currency: str | None = None


_tx_decoder = msgspec.json.Decoder(_TxFacts)


def _with_transaction(decision: Decided, tx: bytes | None) -> Decided:
    """The decision with its transaction's customer, amount and currency when the entry
    carries the transaction (workers and the API stream it), so no store look-up is needed;
    an unreadable one is ignored here (the sink dead-letters it)."""
    if tx is None:
        return decision
    try:
        facts = _tx_decoder.decode(tx)
    except msgspec.MsgspecError:
        return decision
    return msgspec.structs.replace(
        decision, customer_id=facts.customer_id, amount=facts.amount, currency=facts.currency
    )


@dataclass
class AlertStats:
    sent: int = 0
    failed: int = 0
    """Alerts given up after their retries (dead-lettered, logged ``failed``)."""
    skipped: int = 0
    """Alerts of a re-delivered decision, logged already: not sent again."""
    decisions: int = 0
    alerted: int = 0
    """Decisions that matched a route."""
    dead_lettered: int = 0
    """Entries that did not decode, and alerts that failed."""
    outages: int = 0
    """Batches left pending because Valkey or the database was unavailable."""
    lag: Lag | None = None


@dataclass(frozen=True)
class AlertOptions:
    batch_size: int = 100
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    progress_s: float = 5.0
    max_backoff_s: float = 5.0
    concurrency: int = 8
    """Alerts of one batch in flight at once."""


@dataclass
class _Batch:
    ids: list[bytes] = field(default_factory=list)
    decisions: list[Decided] = field(default_factory=list)
    entries: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    """Transaction id -> (entry id, payload), for dead letters."""
    dead: list[DeadLetter] = field(default_factory=list)


class AlertConsumer(TwoStageStop):
    """One consumer of the ``alerts`` group on ``{prefix}.decisions``."""

    def __init__(
        self,
        client: redis.Redis,
        engine: sa.Engine,
        keys: StreamKeys,
        routes: Routes,
        channels: Mapping[ChannelName, Channel],
        *,
        policy: RetryPolicy,
        options: AlertOptions,
        consumer: str | None = None,
        on_progress: Callable[[AlertStats, float], None] | None = None,
        codes: Codes | None = None,
    ) -> None:
        """``codes``: how step-up codes are made; without it a ``step_up`` alert carries
        none."""
        self.client = client
        self.codes = codes
        self.engine = engine
        self.keys = keys
        self.routes = routes
        self.channels = dict(channels)
        self.policy = policy
        self.options = options
        self.consumer = consumer or host_consumer(ALERTS_GROUP)
        self.on_progress = on_progress
        self.stats = AlertStats()
        self.reader = GroupReader(
            client,
            keys.decisions,
            ALERTS_GROUP,
            self.consumer,
            count=options.batch_size,
            block_ms=options.block_ms,
            claim_idle_ms=options.claim_idle_ms,
        )
        self._next_progress = 0.0
        self._stopping = threading.Event()

    # --- the loop ---------------------------------------------------------------------------

    def run(self, *, burst: bool = False, handle_signals: bool = True) -> AlertStats:
        """Alert until asked to stop (signal) or, with ``burst``, until every decision of the
        stream is handled."""
        self.bootstrap()
        if handle_signals:
            self.install_signal_handlers()
        started, backoff = time.monotonic(), 0.1
        self.progress(started, force=True)
        with (
            ThreadPoolExecutor(self.options.concurrency, "alerts-send") as pool,
            _closing(self.channels.values()),
        ):
            while not self.stop_requested:
                try:
                    entries = self.reader.next()
                    if entries:
                        self.process(entries, pool)
                    elif burst and self.caught_up():
                        break
                    self.progress(started)
                    backoff = 0.1
                except (
                    redis.ConnectionError,
                    sa.exc.OperationalError,
                    sa.exc.InterfaceError,
                ) as exc:
                    self.stats.outages += 1
                    log.warning("alerts: %s; retrying in %.1fs", first_line(exc), backoff)
                    self.reader.reread_pending()  # what was read and not acked, again
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.options.max_backoff_s)
        try:
            self.progress(started, force=True)
        except redis.RedisError as exc:
            log.warning("could not measure the final lag: %s", exc)
        return self.stats

    def bootstrap(self) -> None:
        """The store's schema at its newest (the delivery log), the group from the start of
        the stream."""
        migrate.upgrade(self.engine)
        self.reader.reread_pending()
        ensure_group(self.client, self.keys.decisions, ALERTS_GROUP)

    def caught_up(self) -> bool:
        lag = measure(self.client, self.keys.decisions, ALERTS_GROUP)
        return lag.unread == 0 and lag.pending == 0

    # --- one batch --------------------------------------------------------------------------

    def process(self, entries: list[Entry], pool: ThreadPoolExecutor) -> None:
        """Route, look up, claim, send, log; then dead letters and the XACK in one
        MULTI/EXEC."""
        batch = self._decode(entries)
        alerts = self._plan(batch.decisions)
        if alerts:
            with self.engine.begin() as connection:
                wanted = [(a.transaction_id, _customer_id(a), a.channel) for a in alerts]
                to_send = deliveries.claim(connection, wanted)
            fresh = [a for a in alerts if (a.transaction_id, a.channel) in to_send]
            self.stats.skipped += len(alerts) - len(fresh)
            outcomes, stopped = _gather([pool.submit(self._deliver, a) for a in fresh])
            with self.engine.begin() as connection:
                deliveries.record(connection, outcomes)
            failed = self._count(outcomes, batch)
            if stopped:  # not acked: the next start reads the batch again, sends the pending
                log.info("stopped while retrying: %d alerts stay pending for the next run", stopped)
                self.reader.ack([], failed, self.keys.deadletter)  # logged failed: not retried
                self.stats.dead_lettered += len(failed)
                return
            batch.dead += failed
        self._ack(batch)

    def _plan(self, decisions: list[Decided]) -> list[Alert]:
        """The alerts the routes ask for, one per (transaction, channel). A challenge's final
        decision raises none: its step-up alert went out, and its outcome is in the store."""
        candidates = [d for d in decisions if not is_final(d) and self.routes.could_match(d)]
        if not candidates:
            return []
        with self.engine.begin() as connection:
            contexts = look_up(connection, candidates)
        planned: dict[str, Alert] = {}
        for decision in candidates:
            context = contexts[decision.transaction_id]
            for channel, names in self.routes.channels_for(decision, context.amount).items():
                alert = make_alert(
                    decision,
                    channel,
                    names,
                    amount=context.amount,
                    currency=context.currency,
                    customer=context.customer,
                    challenge=self.codes.of(decision) if self.codes else None,
                )
                planned.setdefault(alert.alert_id, alert)  # a decision twice in one batch
        self.stats.alerted += len({a.transaction_id for a in planned.values()})
        return list(planned.values())

    def _deliver(self, alert: Alert) -> deliveries.Outcome:
        channel = self.channels[alert.channel]
        tried = with_retries(lambda: channel.send(alert), self.policy, sleep=self._pause)
        if tried.error is not None:
            log.warning("alert %s failed after %d attempts: %s", alert.alert_id, tried.attempts,
                        tried.error)  # fmt: skip
        return deliveries.Outcome(alert.transaction_id, alert.channel, tried.attempts, tried.error)

    def _pause(self, seconds: float) -> None:
        """The wait between two tries, cut short by a stop request (`_Stopped`)."""
        if self._stopping.wait(seconds):
            raise _Stopped

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """As `TwoStageStop`, and a batch waiting to retry stops waiting: it stays pending,
        rather than hold the stop for up to the whole backoff."""
        self._stopping.set()
        super().request_stop(signum, frame)

    def _count(self, outcomes: list[deliveries.Outcome], batch: _Batch) -> list[DeadLetter]:
        """Count the outcomes; the dead letters of the failed ones."""
        failed = []
        for outcome in outcomes:
            if outcome.error is None:
                self.stats.sent += 1
                continue
            self.stats.failed += 1
            entry_id, payload = batch.entries[outcome.transaction_id]
            reason = f"alerts: {outcome.error} (after {outcome.attempts} attempts)"
            failed.append(
                dead_letter(self.keys.decisions, entry_id, payload, reason, outcome.channel)
            )
        return failed

    def _ack(self, batch: _Batch) -> None:
        self.reader.ack(batch.ids, batch.dead, self.keys.deadletter)
        self.stats.dead_lettered += len(batch.dead)
        self.stats.decisions += len(batch.ids)

    def _decode(self, entries: list[Entry]) -> _Batch:
        batch = _Batch()
        for entry_id, fields in entries:
            batch.ids.append(entry_id)
            payload = fields.get(PAYLOAD, b"")
            try:
                decision = _decoder.decode(payload)
            except msgspec.MsgspecError as exc:
                reason = f"alerts: {exc}"
                batch.dead.append(dead_letter(self.keys.decisions, entry_id, payload, reason))
                continue
            batch.decisions.append(_with_transaction(decision, fields.get(TX)))
            batch.entries.setdefault(decision.transaction_id, (entry_id, payload))
        return batch

    def progress(self, started: float, *, force: bool = False) -> None:
        """Every ``progress_s``: measure the lag and report (the CLI prints a line)."""
        now = time.monotonic()
        if not force and now < self._next_progress:
            return
        self._next_progress = now + self.options.progress_s
        self.stats.lag = measure(self.client, self.keys.decisions, ALERTS_GROUP)
        if self.on_progress is not None:
            self.on_progress(self.stats, now - started)


def _customer_id(alert: Alert) -> str | None:
    return alert.customer.customer_id if alert.customer else None


class _Stopped(Exception):
    """A stop was requested while a delivery waited to retry."""


def _gather(
    futures: list[Future[deliveries.Outcome]],
) -> tuple[list[deliveries.Outcome], int]:
    """The outcomes of the deliveries that ended, and how many were cut short by a stop."""
    outcomes, stopped = [], 0
    for future in futures:
        try:
            outcomes.append(future.result())
        except _Stopped:
            stopped += 1
    return outcomes, stopped


@contextlib.contextmanager
def _closing(channels: Iterable[Channel]) -> Iterator[None]:
    """The channels' kept connections closed once the sends are over."""
    try:
        yield
    finally:
        for channel in channels:
            channel.close()
