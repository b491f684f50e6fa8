"""A worker that stalls with a batch in hand (GC pause, SIGSTOP, slow host) while another
takes its partition over; and the size of a batch when a worker owns many partitions.

The stall is a scorer that blocks in its first batch until the test releases it, so every
step is ordered by events; only a lease's expiry is waited for, as it is time itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.features.wire import Riders
from fraudstream.schema import Label, Transaction, encode
from fraudstream.scoring import AmountPolicy, Scored, Scorer
from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions
from test_stream import _txs
from test_worker_process import _decided_ids

FAST = WorkerOptions(batch_size=64, block_ms=50, claim_idle_ms=200, lease_ttl_ms=300)
"""Leases expire and pending entries go stale within a fraction of a second."""


class StallingScorer(Scorer):
    """Records the size of every batch; with ``stall``, blocks in its first batch of
    transactions until ``resume`` is set: a stalled worker holding a batch it has read and
    not yet committed."""

    def __init__(self, policy: AmountPolicy, *, stall: bool = True) -> None:
        super().__init__(policy)
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.sizes: list[int] = []
        if not stall:
            self.resume.set()

    def score_explained(
        self,
        transactions: Sequence[Transaction],
        arrived_at: Sequence[float] | None = None,
        labels: Sequence[Label] = (),
        riders: Riders | None = None,
    ) -> Scored:
        """The worker's entry point (``score_batch`` goes through it too)."""
        self.sizes.append(len(transactions) + len(labels))
        if transactions and not self.stalled.is_set():
            self.stalled.set()
            if not self.resume.wait(20):
                raise TimeoutError("the stalled scorer was never resumed")
        return super().score_explained(transactions, arrived_at, labels, riders)


class Runner:
    """``worker.run()`` in a thread whose exception, if any, reaches the test."""

    def __init__(self, worker: Worker, **kwargs: Any) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self.worker.run(handle_signals=False, **kwargs)
        except BaseException as exc:  # handed to join()
            self.error = exc

    def join(self, timeout: float = 20) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.worker.stop_requested = True
            self.thread.join(5)
            raise AssertionError(f"worker {self.worker.consumer} did not finish in {timeout}s")
        if self.error is not None:
            raise self.error


def _policy(settings: Settings) -> AmountPolicy:
    return AmountPolicy.from_settings(settings)


def _worker(
    valkey_url: str, keys: StreamKeys, scorer: Scorer, consumer: str, options: WorkerOptions = FAST
) -> Worker:
    return Worker(redis.Redis.from_url(valkey_url), keys, scorer, options, consumer=consumer)


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _stall_a(client: redis.Redis, valkey_url: str, settings: Settings) -> tuple[Runner, Any]:
    """20 transactions on one partition; worker ``a`` reads them all and stalls."""
    keys = StreamKeys(settings.stream_prefix, 1)
    Producer(client, keys).send(_txs(20))
    scorer = StallingScorer(_policy(settings))
    a = Runner(_worker(valkey_url, keys, scorer, "a"), burst=True)
    assert scorer.stalled.wait(10), "a never read its batch"
    return a, scorer


def _resume_and_stop(runner: Runner, scorer: StallingScorer) -> None:
    """The stalled worker wakes up, finishes the batch in hand as it sees fit, and stops."""
    runner.worker.stop_requested = True
    scorer.resume.set()
    runner.join()


def _one_decision_each(client: redis.Redis, settings: Settings) -> None:
    ids = _decided_ids(client, StreamKeys(settings.stream_prefix, 1))
    assert len(ids) == 20, f"{len(ids)} decisions for {len(set(ids))} transactions"
    assert sorted(ids) == sorted(t.transaction_id for t in _txs(20))


def test_a_stalled_worker_drops_the_batch_another_worker_decided(
    client: redis.Redis, valkey_url: str, settings: Settings
) -> None:
    a, stall = _stall_a(client, valkey_url, settings)
    b = _worker(valkey_url, StreamKeys(settings.stream_prefix, 1), Scorer(_policy(settings)), "b")
    Runner(b, burst=True).join()  # takes the partition once a's lease expires, claims, decides
    assert b.stats.claimed == 20 and b.stats.processed == 20
    _resume_and_stop(a, stall)
    _one_decision_each(client, settings)
    assert a.worker.stats.processed == 0
    assert a.worker.stats.dropped_batches == 1 and a.worker.stats.dropped == 20


def test_a_stalled_worker_acks_nothing_another_worker_has_claimed(
    client: redis.Redis, valkey_url: str, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, 1)
    a, stall_a = _stall_a(client, valkey_url, settings)
    stall_b = StallingScorer(_policy(settings))
    b = Runner(_worker(valkey_url, keys, stall_b, "b"), burst=True)
    assert stall_b.stalled.wait(10), "b never claimed a's batch"
    _resume_and_stop(a, stall_a)  # a commits while b holds the claimed entries
    pending: Any = client.xpending_range(keys.input(0), GROUP, "-", "+", 100)
    assert [p["consumer"] for p in pending] == [b"b"] * 20, "a acked entries b owns"
    assert client.xlen(keys.decisions) == 0
    stall_b.resume.set()
    b.join()
    _one_decision_each(client, settings)


def test_a_batch_read_under_a_lost_lease_is_dropped_even_if_the_lease_is_back(
    client: redis.Redis, valkey_url: str, settings: Settings
) -> None:
    a, stall = _stall_a(client, valkey_url, settings)
    b = _worker(valkey_url, StreamKeys(settings.stream_prefix, 1), Scorer(_policy(settings)), "b")
    Runner(b, burst=True).join()  # b takes the partition over, decides, leaves
    a.worker.leases.rebalance()  # a heartbeat during the stall: a holds partition 0 again
    assert a.worker.leases.owned == {0}
    _resume_and_stop(a, stall)
    _one_decision_each(client, settings)
    assert a.worker.stats.dropped_batches == 1


def test_a_lease_that_expired_unclaimed_still_commits(
    client: redis.Redis, valkey_url: str, settings: Settings
) -> None:
    a, stall = _stall_a(client, valkey_url, settings)
    lease = StreamKeys(settings.stream_prefix, 1).lease(0)
    _wait_until(lambda: not client.exists(lease), "a's lease expired")
    _resume_and_stop(a, stall)  # nobody took the partition meanwhile: the batch is good
    _one_decision_each(client, settings)
    assert a.worker.stats.processed == 20 and a.worker.stats.dropped_batches == 0


@pytest.mark.parametrize("batch_size", [500, 10])
def test_a_batch_never_exceeds_batch_size_and_every_partition_progresses(
    client: redis.Redis, valkey_url: str, settings: Settings, batch_size: int
) -> None:
    keys = StreamKeys(settings.stream_prefix, 16)
    per = 520
    Producer(client, keys).send_encoded(
        (p, encode(tx)) for p in range(16) for tx in _txs(per, start=p * per)
    )
    scorer = StallingScorer(_policy(settings), stall=False)
    options = WorkerOptions(batch_size=batch_size, block_ms=50, lease_ttl_ms=60_000)
    worker = _worker(valkey_url, keys, scorer, "w", options)
    worker.run(max_messages=4 * batch_size, handle_signals=False)
    assert scorer.sizes and max(scorer.sizes) <= batch_size, scorer.sizes
    left = [int(client.xlen(keys.input(p))) for p in range(16)]
    assert all(n < per for n in left), f"partitions left untouched: {left}"


def test_a_lone_busy_partition_still_fills_its_batches(
    client: redis.Redis, valkey_url: str, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, 16)
    Producer(client, keys).send_encoded((3, encode(tx)) for tx in _txs(1000))
    scorer = StallingScorer(_policy(settings), stall=False)
    options = WorkerOptions(batch_size=500, block_ms=50, lease_ttl_ms=60_000)
    _worker(valkey_url, keys, scorer, "w", options).run(burst=True, handle_signals=False)
    assert scorer.sizes == [500, 500]
