"""Micro-batching: concurrent HTTP requests scored together in one `Scorer.score_batch`.

A request waits at most ``max_wait_s`` for company (or until ``max_batch`` are waiting), then
the whole group is scored in a worker thread with one feature round trip and one model call.
One batch at a time, so this process is a single writer of the feature state; a batch the
feature store refuses (a worker wrote the same customer meanwhile) is retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio.to_thread

from fraudstream.features.wire import FeatureStoreError
from fraudstream.schema import Decision, Transaction
from fraudstream.scoring import Scorer

RETRIES = 3


class MicroBatcher:
    def __init__(self, scorer: Scorer, *, max_batch: int = 64, max_wait_s: float = 0.002) -> None:
        self.scorer = scorer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Transaction, float, asyncio.Future[Decision]]] = []
        self._flush_scheduled = False
        self._lock = asyncio.Lock()

    async def score(self, tx: Transaction, arrived_at: float) -> Decision:
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._pending.append((tx, arrived_at, future))
        if len(self._pending) >= self.max_batch:
            asyncio.ensure_future(self._flush())
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(
                self.max_wait_s, lambda: asyncio.ensure_future(self._flush())
            )
        return await future

    async def _flush(self) -> None:
        async with self._lock:
            self._flush_scheduled = False
            batch, self._pending = self._pending, []
            if not batch:
                return
            txs = [tx for tx, _, _ in batch]
            arrivals = [t for _, t, _ in batch]
            try:
                decisions = await anyio.to_thread.run_sync(self._score, txs, arrivals)
            except Exception as exc:  # every waiting request must learn of it
                for _, _, future in batch:
                    future.set_exception(exc)
                return
            for (_, _, future), decision in zip(batch, decisions, strict=True):
                future.set_result(decision)

    def _score(self, txs: Sequence[Transaction], arrivals: Sequence[float]) -> list[Decision]:
        for attempt in range(RETRIES):
            try:
                return self.scorer.score_batch(txs, arrivals)
            except FeatureStoreError:
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")
