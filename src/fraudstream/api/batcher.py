"""Micro-batching: concurrent HTTP requests scored together in one `Scorer.score_batch`.

Natural batching: while a batch is being decided, new requests gather, and go together the
moment it is done. A batch of `CONCURRENT` or more requests shows concurrent clients whose
next requests are on their way (each was answered a moment ago): the next batch waits, at
most ``max_wait_s``, until the requests it answered plus those already waiting are there.
Measured with 16 connections (`benchmarks/bench_api.py`'s client, batch sizes logged):
- with no wait, batches alternated between the one or two requests that arrived during a
  batch and the rest: sizes 1, 2, 14 and 15 in 3 s, the small ones ~4.2–4.6 ms against
  ~5.2 ms for 15, half the batches spent on a tenth of the requests;
- waiting for as many as the last batch answered settled into two halves of 8 taking
  turns (each ~5 ms: most of a batch's cost is fixed);
- waiting for those plus the ones waiting: 296 batches of 16 out of 319, ~1,650 req/s
  against ~1,210–1,320 for the halves (both under a sampling profiler).
After a smaller batch the next one goes at once: a client calling one request at a time, or
requests arriving apart (a fixed offered rate), pay no timer. Each batch is decided in the
batcher's thread (`DecideThread`) with one feature round trip and one model call. One
batch at a time, so this process is a single writer of the feature state; a batch the
feature store refuses (another process wrote the same customer meanwhile) is computed again.

Deciding is idempotent by ``transaction_id`` (`DecidedStore`): an id decided before — by this
process, another one, or the same batch — gets the kept decision back, flagged as a replay,
and is not scored again, so a retried request leaves the customer's features untouched. New
decisions are kept and appended to the decisions stream in the ``MULTI``/``EXEC`` that stores
the batch's feature state (`Keeper`, `MicroBatcher._keep`; one node), in the thread, off the
event loop: a decision is kept if and only if its transaction counts in the features, and a
lone request waits on Valkey twice, for its read and for that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.typing import EncodableT, FieldT

from fraudstream.features.wire import FeatureStoreError, StateConflict
from fraudstream.schema import Decision, Explanation, Transaction
from fraudstream.scoring import Scored, Scorer
from fraudstream.stream.decided import AlreadyDecided, DecidedStore, Undecided

RETRIES = 3
"""Attempts at a batch the feature store fails (other than a `StateConflict`)."""
CONFLICT_BUDGET_S = 0.5
"""How long a batch is computed again while other writers keep changing its customers.
Two ``serve`` processes (``--workers 2``) given the same customers at full speed met a
conflict in about one batch in ten; three attempts in a row, all there was before, failed
often enough that a benchmark run got a 503."""
CONFLICT_PAUSE_S = 0.002
REPLY_SPIN_S = 0.0003
"""How long the batch's thread polls for each feature round trip's reply before it sleeps
(`FeatureEngine.reply_spin_s`). A lone request's replies come in ~50 µs; sleeping for them
added ~35 µs a round trip in waking up. `benchmarks/bench_api.py` side by side (6 runs of
800 lone requests each, alternated): p50 2.44 → 2.38 ms."""
CONCURRENT = 4
"""A batch of at least this many requests makes the next one wait for company (see above)."""


@dataclass(frozen=True)
class Answer:
    decision: Decision
    replay: bool
    """True when ``decision`` was kept from an earlier request for the same id."""


Entry = Callable[[Decision, Transaction, Explanation | None], Mapping[FieldT, EncodableT]]
"""A decision's entry in the decisions stream, with its transaction (and, when flagged,
what the model saw)."""


def _nothing(decisions: Sequence[Decision]) -> None:
    return None


@dataclass(frozen=True)
class Keeper:
    """How the batcher keeps what it decides: each decision unless its id has one already,
    appended (its `entry`) to the decisions stream, both or neither (`MicroBatcher._keep`).
    ``on_kept`` then sees the ones kept (the app's metrics and drift). Runs in the batch's
    thread."""

    decided: DecidedStore
    stream: str
    maxlen: int
    entry: Entry
    on_kept: Callable[[Sequence[Decision]], None] = _nothing


class DecideThread:
    """One thread that runs the batches, started on demand, leaving after `IDLE_S` idle.

    ``anyio.to_thread.run_sync`` took ~130 µs for a call doing nothing (uvloop, this host),
    against ~30 µs here: a thread already waiting on a `queue.SimpleQueue` wakes at once, and
    the answer goes back with one ``call_soon_threadsafe``. Paid once per batch, that is ~4 %
    of a lone request's ~3 ms."""

    IDLE_S = 30.0

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._jobs.put((loop, future, fn, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="api-decide", daemon=True)
                self._thread.start()
        return await future

    def _serve(self) -> None:
        while True:
            try:
                loop, future, fn, args = self._jobs.get(timeout=self.IDLE_S)
            except queue.Empty:
                with self._lock:  # a job put meanwhile is seen here, or finds no thread
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            result, error = None, None
            try:
                result = fn(*args)
            except BaseException as exc:  # the awaiting request learns of it
                error = exc
            with contextlib.suppress(RuntimeError):  # its loop closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


Waiting = tuple[Transaction, float, "asyncio.Future[Answer]"]
"""A request's transaction, its arrival time, and where its answer goes."""


class MicroBatcher:
    def __init__(
        self,
        scorer: Scorer,
        keeper: Keeper,
        *,
        max_wait_s: float = 0.002,
    ) -> None:
        self.scorer = scorer
        self.max_wait_s = max_wait_s
        self._last_size = 0
        self.keeper = keeper
        self.decided = keeper.decided
        self._pending: list[Waiting] = []
        self._draining = False
        self._want = 0
        self._company_came: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None  # held: the loop keeps weak refs
        self._thread = DecideThread()
        features = scorer.features
        self._together = (
            features is not None and not features.cluster and scorer.carries(self.decided.client)
        )
        """Decisions kept in the transaction that stores their feature state."""
        if features is not None:
            features.reply_spin_s = REPLY_SPIN_S
            features.hold_writes = self._together

    async def score(self, tx: Transaction, arrived_at: float) -> Answer:
        return (await self.score_many([tx], arrived_at))[0]

    async def score_many(self, txs: Sequence[Transaction], arrived_at: float) -> list[Answer]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Answer]] = []
        for tx in txs:
            futures.append(loop.create_future())
            self._pending.append((tx, arrived_at, futures[-1]))
        company = self._company_came
        if company is not None and not company.done() and len(self._pending) >= self._want:
            company.set_result(None)
        if not self._draining:
            self._draining = True
            self._drainer = asyncio.ensure_future(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        """Decide what waits, batch after batch, until nothing does. Requests that arrive
        while a batch is decided join the next one; the flag drops only once the queue is
        empty, with no await in between, so no request is left behind."""
        try:
            while True:
                if self._last_size >= CONCURRENT:
                    # the clients just answered, and those already waiting
                    await self._company(self._last_size + len(self._pending))
                if not self._pending:  # idle: the next request is not company on its way
                    self._last_size = 0
                    break
                batch, self._pending = self._pending, []
                self._last_size = len(batch)
                await self._decide_batch(batch)
        finally:
            self._draining = False

    async def _company(self, want: int) -> None:
        """Until ``want`` requests wait, or ``max_wait_s`` has passed."""
        if len(self._pending) >= want:
            return
        self._want = want
        self._company_came = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_wait_s):
                await self._company_came
        self._company_came = None

    async def _decide_batch(self, batch: list[Waiting]) -> None:
        txs = [tx for tx, _, _ in batch]
        arrivals = [t for _, t, _ in batch]
        try:
            answers: list[Answer] = await self._thread.run(self._decide, txs, arrivals)
        except Exception as exc:  # every waiting request must learn of it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # its request may have been cancelled
                future.set_result(answer)

    def _decide(self, txs: Sequence[Transaction], arrivals: Sequence[float]) -> list[Answer]:
        """Kept decisions for known ids; the first request of each new id scored, kept
        (first writer wins) and streamed; its repeats in the batch answered as replays."""
        ids = [tx.transaction_id for tx in txs]
        known, scored, kept_before = self._first_scored(txs, arrivals)
        first = {i: n for n, i in reversed(list(enumerate(ids))) if i not in known}
        fresh = scored.decisions
        for d, earlier in zip(fresh, kept_before, strict=True):
            known[d.transaction_id] = Answer(d, False) if earlier is None else Answer(earlier, True)
        self.keeper.on_kept([d for d, e in zip(fresh, kept_before, strict=True) if e is None])
        return [
            known[i] if first.get(i) == n else Answer(known[i].decision, True)
            for n, i in enumerate(ids)
        ]

    def _first_scored(
        self, txs: Sequence[Transaction], arrivals: Sequence[float]
    ) -> tuple[dict[str, Answer], Scored, list[Decision | None]]:
        """The kept decisions of the batch's known ids, and the first request of each other
        id scored and kept (`_score`). The check rides with the feature read (`Undecided`:
        one round trip, not two): when it finds an id decided, that read is abandoned before
        it wrote anything and the batch goes again without the known ids, as if they had
        been looked up first. Without a feature read to ride with (no feature engine on
        this client), the ids are looked up first."""
        ids = [tx.transaction_id for tx in txs]
        first = {i: n for n, i in reversed(list(enumerate(ids)))}
        known: dict[str, Answer] = {}
        if self.scorer.carries(self.decided.client):
            while True:  # each pass finds at least one more id decided: it ends
                todo = sorted(n for i, n in first.items() if i not in known)
                try:
                    scored = self._score([txs[n] for n in todo], [arrivals[n] for n in todo], True)
                    return known, *scored
                except AlreadyDecided as exc:
                    known.update((i, Answer(d, True)) for i, d in exc.found.items())
        kept = {i: d for i, d in zip(ids, self.decided.get_many(ids), strict=True) if d}
        known = {i: Answer(d, True) for i, d in kept.items()}
        todo = sorted(n for i, n in first.items() if i not in known)
        return known, *self._score([txs[n] for n in todo], [arrivals[n] for n in todo])

    def _score(
        self, txs: Sequence[Transaction], arrivals: Sequence[float], check: bool = False
    ) -> tuple[Scored, list[Decision | None]]:
        """The batch scored and kept (`_keep`: per decision, the one kept before it), its
        ids found undecided in its feature read if ``check`` (`Undecided`, ``WATCH``ed when
        the decisions are kept in the batch's transaction); computed again when another
        writer changed one of its customers meanwhile (for up to `CONFLICT_BUDGET_S`, after
        a pause of up to `CONFLICT_PAUSE_S` so that two processes on one customer fall out of
        step), and up to `RETRIES` times in all when the feature store failed otherwise.

        Raises:
            AlreadyDecided: ``check`` found some ids decided (nothing was stored)."""
        deadline = time.monotonic() + CONFLICT_BUDGET_S
        failures = 0
        ids = [tx.transaction_id for tx in txs]
        unseen = Undecided(self.decided, ids, watch=self._together) if check else None
        while True:
            try:
                scored = self.scorer.score_explained(txs, arrivals, riders=unseen)
                return scored, self._keep(scored, txs)
            except StateConflict:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(random.uniform(0.0, CONFLICT_PAUSE_S))
            except FeatureStoreError:
                failures += 1
                if failures == RETRIES:
                    raise
            finally:  # a batch that failed before its write went: nothing of it is stored
                if self.scorer.features is not None:
                    self.scorer.features.abandon()

    def _keep(self, scored: Scored, txs: Sequence[Transaction]) -> list[Decision | None]:
        """Keep and stream the batch's decisions: on one node in the ``MULTI``/``EXEC``
        that stores the batch's feature state (held by the engine since its features were
        computed, its ids ``WATCH``ed since they were found undecided:
        `DecidedStore.keep_watched`), so a decision is kept if and only if its transaction
        counts in the features, and a lone request waits on Valkey twice (the read, this)
        instead of three times; elsewhere on their own (`DecidedStore.keep_streamed`)."""
        k, decisions = self.keeper, scored.decisions
        by_id = {tx.transaction_id: tx for tx in txs}
        why = scored.explanations
        entries = [
            k.entry(d, by_id[d.transaction_id], why.get(d.transaction_id)) for d in decisions
        ]
        if not self._together:
            return k.decided.keep_streamed(decisions, entries, k.stream, k.maxlen)
        commands = k.decided.keep_watched(decisions, entries, k.stream, k.maxlen)
        k.decided.settle_watched(decisions, self.scorer.commit(commands))
        return [None] * len(decisions)
