from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from msgspec.structs import replace
from redis.typing import EncodableT, FieldT

from fraudstream.config import Settings
from fraudstream.errors import StreamError
from fraudstream.features import FeatureEngine
from fraudstream.schema import Decision, Transaction, decode_decision, decode_transaction, encode
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.fleet import wait_for_partitions
from fraudstream.stream.keys import GROUP, PAYLOAD, StreamKeys, partition_of
from fraudstream.stream.lanes import Gate, Width
from fraudstream.stream.leases import HUNGRY_POLL_S, LeaseManager, holder
from fraudstream.stream.producer import Producer
from fraudstream.stream.worker import Worker, WorkerOptions


def _txs(n: int, customers: int = 50, start: int = 0) -> list[Transaction]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        Transaction(
            transaction_id=f"tx{i}",
            timestamp=t0 + timedelta(seconds=i),
            customer_id=f"c{i % customers}",
            terminal_id=f"t{i % 7}",
            merchant_id="m",
            amount=float(1 + (i * 37) % 400),
            currency="EUR",
            channel="card_present",
        )
        for i in range(start, start + n)
    ]


def _keys(settings: Settings) -> StreamKeys:
    return StreamKeys(settings.stream_prefix, settings.partitions)


def _worker(
    client: redis.Redis,
    settings: Settings,
    consumer: str = "w1",
    features: FeatureEngine | None = None,
) -> Worker:
    options = WorkerOptions(
        batch_size=64,
        block_ms=settings.block_ms,
        claim_idle_ms=settings.claim_idle_ms,
        lease_ttl_ms=settings.lease_ttl_ms,
    )
    return Worker(
        client,
        _keys(settings),
        Scorer(AmountPolicy.from_settings(settings), features=features),
        options,
        consumer=consumer,
    )


def _decisions(client: redis.Redis, settings: Settings) -> list[Any]:
    entries: Any = client.xrange(_keys(settings).decisions)
    return [decode_decision(fields[PAYLOAD]) for _, fields in entries]


@given(st.text(min_size=1, max_size=40), st.integers(min_value=1, max_value=512))
def test_partition_is_stable_and_in_range(customer: str, partitions: int) -> None:
    p = partition_of(customer, partitions)
    assert 0 <= p < partitions
    assert p == partition_of(customer, partitions)


def test_producer_keeps_each_customer_on_one_partition_in_order(
    client: redis.Redis, settings: Settings
) -> None:
    keys = _keys(settings)
    Producer(client, keys, batch_size=16).send(_txs(200, customers=9))
    seen: dict[str, int] = {}
    for p in range(keys.partitions):
        entries: Any = client.xrange(keys.input(p))
        ids = []
        for _, fields in entries:
            tx = decode_transaction(fields[PAYLOAD])
            assert seen.setdefault(tx.customer_id, p) == p
            ids.append(int(tx.transaction_id[2:]))
        assert ids == sorted(ids)
    assert len(seen) == 9


@pytest.mark.parametrize("protocol", [2, 3])
def test_end_to_end_every_transaction_gets_one_decision(
    client: redis.Redis, settings: Settings, valkey_url: str, protocol: int
) -> None:
    """Whichever protocol the worker's client speaks (RESP3 is redis-py's default from 7 on,
    RESP2 before): the worker reads and commits raw replies of either shape."""
    txs = _txs(500)
    Producer(client, _keys(settings), batch_size=100).send(txs)
    speaking = redis.Redis.from_url(valkey_url, protocol=protocol)
    stats = _worker(speaking, settings).run(burst=True, handle_signals=False)
    decisions = _decisions(client, settings)
    assert sorted(d.transaction_id for d in decisions) == sorted(t.transaction_id for t in txs)
    assert stats.processed == 500 and stats.dead_lettered == 0
    by_id = {d.transaction_id: d for d in decisions}
    policy = AmountPolicy.from_settings(settings)
    for tx in txs:
        assert by_id[tx.transaction_id].score == policy.score(tx.amount)
    for p in range(settings.partitions):  # acked and removed: nothing pending, nothing left
        assert client.xpending(_keys(settings).input(p), GROUP)["pending"] == 0
        assert client.xlen(_keys(settings).input(p)) == 0


def test_a_worker_decision_is_kept_by_id_and_the_first_kept_one_stands(
    client: redis.Redis, settings: Settings
) -> None:
    txs = _txs(100)
    kept = DecidedStore(client, settings.stream_prefix)
    earlier = kept.keep([_decided_elsewhere("tx7")])  # e.g. by the API before a replay
    assert earlier == [None]
    Producer(client, _keys(settings)).send(txs)
    _worker(client, settings).run(burst=True, handle_signals=False)
    streamed = {d.transaction_id: d for d in _decisions(client, settings)}
    for tx in txs:
        found = kept.get(tx.transaction_id)
        if tx.transaction_id == "tx7":
            assert found == _decided_elsewhere("tx7")  # first writer wins
        else:
            assert found == streamed[tx.transaction_id]
    assert 0 < client.ttl(kept.key("tx0")) <= WorkerOptions().decision_ttl_s


def _decided_elsewhere(transaction_id: str) -> Decision:
    return Decision(
        transaction_id=transaction_id,
        score=999,
        outcome="block",
        reasons=["elsewhere"],
        model_version="m",
        rules_version="r",
        latency_ms=1.0,
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@pytest.mark.parametrize("where", ["one node", "cluster"])
def test_kept_and_streamed_together_the_first_kept_one_stands(
    where: str, request: pytest.FixtureRequest
) -> None:
    """`DecidedStore.keep_streamed` (the API's path): a decision is streamed exactly when it
    is kept; an id kept before gets the earlier decision back and streams nothing."""
    conn: Any = request.getfixturevalue("client" if where == "one node" else "cluster_client")
    kept = DecidedStore(conn, "tx")
    kept.keep([_decided_elsewhere("a")])
    ours = [replace(_decided_elsewhere(i), score=5, reasons=["ours"]) for i in ("a", "b", "c")]
    entries: list[dict[FieldT, EncodableT]] = [{"payload": d.transaction_id} for d in ours]
    earlier = kept.keep_streamed(ours, entries, "{tx}.decisions", 1000)
    assert earlier == [_decided_elsewhere("a"), None, None]
    streamed: Any = conn.xrange("{tx}.decisions")
    assert [fields[b"payload"] for _, fields in streamed] == [b"b", b"c"]
    assert [kept.get(i) for i in "abc"] == [_decided_elsewhere("a"), ours[1], ours[2]]
    assert kept.keep_streamed(ours[1:], entries[1:], "{tx}.decisions", 1000) == ours[1:]
    assert conn.xlen("{tx}.decisions") == 2


def test_an_unreadable_customer_state_holds_up_no_batch(
    client: redis.Redis, settings: Settings
) -> None:
    """17 bytes at one customer's key: every transaction is still decided, that customer's
    without history (its state started afresh), nothing retried."""
    features = FeatureEngine(client)
    client.set(features.customer_key("c3"), b"\x07" * 17)
    txs = _txs(200)
    Producer(client, _keys(settings)).send(txs)
    w = _worker(client, settings, features=features)
    watchdog = threading.Timer(20, w.request_stop)  # a batch retried forever ends the test
    watchdog.start()
    try:
        stats = w.run(burst=True, handle_signals=False)
    finally:
        watchdog.cancel()
    assert stats.retried_batches == 0
    assert sorted(d.transaction_id for d in _decisions(client, settings)) == sorted(
        t.transaction_id for t in txs
    )
    assert features.stats.reset == 1 and features.stats.processed == 200
    assert features.customer_state("c3")["transactions_seen"] == 4


def test_poison_messages_go_to_dead_letter_with_reason(
    client: redis.Redis, settings: Settings
) -> None:
    keys = _keys(settings)
    good = _txs(20)
    negative = encode(_txs(1, start=100)[0]).replace(b'"amount":', b'"amount":-', 1)
    poison = [(0, b"not json at all"), (1, negative), (2, b'{"transaction_id": "x"}')]
    Producer(client, keys).send_encoded(
        [(partition_of(t.customer_id, keys.partitions), encode(t)) for t in good[:10]]
        + poison
        + [(partition_of(t.customer_id, keys.partitions), encode(t)) for t in good[10:]]
    )
    _worker(client, settings).run(burst=True, handle_signals=False)
    assert len(_decisions(client, settings)) == 20  # the good ones around the poison survive
    dead: Any = client.xrange(keys.deadletter)
    reasons = {fields[b"payload"]: fields for _, fields in dead}
    assert set(reasons) == {p for _, p in poison}
    assert reasons[b"not json at all"][b"reason"].startswith(b"not valid JSON")
    assert reasons[negative][b"field"] == b"amount"
    assert reasons[negative][b"reason"] == b"amount: must be >= 0, got -101"
    assert reasons[b'{"transaction_id": "x"}'][b"reason"].endswith(b"required field is missing")
    for fields in reasons.values():
        assert fields[b"stream"].startswith(b"tx.in.") and fields[b"entry_id"]


def test_two_concurrent_workers_lose_and_double_nothing(
    client: redis.Redis, settings: Settings, valkey_url: str
) -> None:
    txs = _txs(3000, customers=200)
    Producer(client, _keys(settings)).send(txs)
    w1 = _worker(redis.Redis.from_url(valkey_url), settings, "w1")
    w2 = _worker(redis.Redis.from_url(valkey_url), settings, "w2")
    threads = [
        threading.Thread(target=w.run, kwargs={"burst": True, "handle_signals": False})
        for w in (w1, w2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [d.transaction_id for d in _decisions(client, settings)]
    assert len(ids) == len(set(ids)) == 3000
    assert w1.stats.processed + w2.stats.processed == 3000


def test_pending_entries_of_a_dead_consumer_are_claimed(
    client: redis.Redis, settings: Settings
) -> None:
    keys = _keys(settings)
    Producer(client, keys).send(_txs(40))
    w = _worker(client, settings)
    w.bootstrap()
    for p in range(keys.partitions):  # a consumer reads everything, then dies before acking
        client.xreadgroup(GROUP, "dead-consumer", {keys.input(p): ">"})
    assert (
        sum(client.xpending(keys.input(p), GROUP)["pending"] for p in range(keys.partitions)) == 40
    )
    threading.Event().wait(settings.claim_idle_ms / 1000 + 0.2)
    stats = w.run(burst=True, handle_signals=False)
    assert stats.claimed == 40
    assert len({d.transaction_id for d in _decisions(client, settings)}) == 40


def test_leases_converge_to_fair_shares(client: redis.Redis, settings: Settings) -> None:
    keys = _keys(settings)
    a = LeaseManager(client, keys, "a", ttl_ms=5000)
    b = LeaseManager(client, keys, "b", ttl_ms=5000)
    assert a.rebalance() == set(range(4))  # alone: takes everything
    assert b.rebalance() == set()  # nothing free yet
    a.rebalance()  # sees two live workers: sheds down to its share
    b.rebalance()
    assert len(a.owned) == len(b.owned) == 2 and not a.owned & b.owned
    assert holder(client.get(keys.lease(min(b.owned)))) == "b"  # type: ignore[arg-type]
    b.release_all()  # b leaves: a takes its partitions back
    a.rebalance()
    assert a.owned == set(range(4))


def test_a_worker_short_of_its_share_takes_a_given_back_partition_before_its_heartbeat(
    client: redis.Redis, settings: Settings
) -> None:
    """A worker joining holds nothing until the others give back their extras, at their
    own heartbeats; the joiner then must not wait for its next one (a third of the TTL)
    to take them: those partitions would go unread that long. It looks again for free
    ones every `HUNGRY_POLL_S` while it holds less than its share."""
    keys = _keys(settings)
    a = LeaseManager(client, keys, "a", ttl_ms=30_000)  # heartbeats every 10 s
    b = LeaseManager(client, keys, "b", ttl_ms=30_000)
    a.rebalance()
    assert b.rebalance() == set() and not b.due()  # all held by a: nothing to look for yet
    a.rebalance()  # gives back its extras
    deadline = time.monotonic() + 2.0
    while not b.due():
        assert time.monotonic() < deadline, "b did not look for the free partitions"
        time.sleep(HUNGRY_POLL_S / 4)
    assert len(b.rebalance()) == keys.partitions // 2
    assert len(a.owned) == keys.partitions // 2 and not a.owned & b.owned
    time.sleep(HUNGRY_POLL_S * 2)
    assert not a.due() and not b.due()  # both hold their share: nothing to look for


def test_the_fleet_counts_as_ready_once_its_partitions_are_fairly_shared(
    client: redis.Redis, settings: Settings
) -> None:
    """The demo and the load test measure only once each worker holds its share: a worker
    still over its share gives its extras back during the run, and they wait for a taker."""
    keys = _keys(settings)
    a = LeaseManager(client, keys, "a", ttl_ms=30_000)
    b = LeaseManager(client, keys, "b", ttl_ms=30_000)
    a.rebalance()
    b.rebalance()
    client.delete(*(keys.lease(p) for p in range(keys.partitions // 2 + 1, keys.partitions)))
    assert len(b.rebalance()) == keys.partitions // 2 - 1  # a holds one over its share
    with pytest.raises(StreamError, match="did not take their partitions"):
        wait_for_partitions(client, keys, 2, [], timeout=0.5)
    a.rebalance()
    b.rebalance()
    wait_for_partitions(client, keys, 2, [], timeout=0.5)


def test_a_lost_lease_is_dropped(client: redis.Redis, settings: Settings) -> None:
    keys = _keys(settings)
    a = LeaseManager(client, keys, "a", ttl_ms=5000)
    a.rebalance()
    client.set(keys.lease(0), "intruder")  # as if a's lease expired and another took it
    a.rebalance()
    assert 0 not in a.owned and client.get(keys.lease(0)) == b"intruder"


def test_two_lanes_decide_each_transaction_once_each_customer_in_order(
    client: redis.Redis, settings: Settings
) -> None:
    """Two lanes, each with its own feature engine, on disjoint partitions: every
    transaction decided once, each customer's in order, no feature write conflicting with
    the other lane's (a conflict would retry a batch)."""
    keys = _keys(settings)
    txs = _txs(1200, customers=60)
    Producer(client, keys, batch_size=100).send(txs)
    engines = [FeatureEngine(client), FeatureEngine(client)]
    scorers = [Scorer(AmountPolicy.from_settings(settings), features=e) for e in engines]
    w = Worker(client, keys, scorers, WorkerOptions(batch_size=64, block_ms=50), consumer="w")
    stats = w.run(burst=True, handle_signals=False)
    decided = [d.transaction_id for d in _decisions(client, settings)]
    assert sorted(decided) == sorted(t.transaction_id for t in txs)
    assert stats.processed == 1200 and stats.retried_batches == 0
    assert stats.widened >= 1  # the backlog opened the second lane
    assert all(e.stats.processed > 0 for e in engines)  # both lanes worked
    assert sum(e.stats.processed for e in engines) == 1200
    order = {d: i for i, d in enumerate(decided)}
    by_customer: dict[str, list[int]] = {}
    for tx in txs:
        by_customer.setdefault(tx.customer_id, []).append(order[tx.transaction_id])
    assert all(seq == sorted(seq) for seq in by_customer.values())


def test_a_second_lane_opens_for_a_backlog_and_closes_once_it_is_drained() -> None:
    width = Width(2, batch_size=64)
    sizes = [64, 10, 64, 64, 64, 64, 30, 64, 0, 5, 12, 64]
    assert [width.observe(n) for n in sizes] == [
        None, None, None, 2, None, None, None, None, None, None, 1, None
    ]  # fmt: skip
    assert Width(1, batch_size=64).observe(64) is None  # one lane: nothing to open


def test_a_trickle_keeps_one_lane_and_a_backlog_opens_the_second_until_it_drains(
    client: redis.Redis, settings: Settings
) -> None:
    """Batches smaller than ``batch_size`` never open the second lane; a backlog does, and
    the small batches after it close it again. Every transaction is decided once."""
    keys = _keys(settings)
    engines = [FeatureEngine(client), FeatureEngine(client)]
    scorers = [Scorer(AmountPolicy.from_settings(settings), features=e) for e in engines]
    w = Worker(client, keys, scorers, WorkerOptions(batch_size=64, block_ms=20), consumer="w")
    runner = threading.Thread(target=lambda: w.run(handle_signals=False), daemon=True)
    runner.start()
    producer = Producer(client, keys, batch_size=100)

    def decided(n: int) -> None:
        deadline = time.monotonic() + 30
        while w.stats.processed < n:
            assert time.monotonic() < deadline, f"{w.stats.processed} of {n} decided"
            time.sleep(0.01)

    try:
        for wave in range(5):  # a trickle: 10 at a time
            producer.send(_txs(10, start=10 * wave))
            decided(10 * (wave + 1))
        assert (w.stats.widened, engines[1].stats.processed, w.width.open) == (0, 0, 1)
        producer.send(_txs(1200, customers=60, start=50))
        decided(1250)
        # at least once: the lanes' shares drain unevenly, so it may close and open again
        assert w.stats.widened >= 1 and engines[1].stats.processed > 0
        deadline = time.monotonic() + 10
        while w.width.open != 1:  # empty reads: the backlog is drained
            assert time.monotonic() < deadline, "the second lane stayed open"
            time.sleep(0.01)
        producer.send(_txs(10, start=1250))
        decided(1260)
    finally:
        w.request_stop()
        runner.join(10)
    ids = sorted(d.transaction_id for d in _decisions(client, settings))
    assert ids == sorted(f"tx{i}" for i in range(1260))


def test_a_closed_lane_does_not_hold_the_heartbeat_back(
    client: redis.Redis, settings: Settings
) -> None:
    """Heartbeats every ~0.2 s, a read blocking up to 1.5 s: with its second lane closed, a
    worker decides each small wave in well under that. (A closed lane that waited for its
    empty read inside the gate made each heartbeat, and the open lane, wait for it.)"""
    keys = _keys(settings)
    scorers = [Scorer(AmountPolicy.from_settings(settings)) for _ in range(2)]
    options = WorkerOptions(batch_size=64, block_ms=1500, lease_ttl_ms=600)
    w = Worker(client, keys, scorers, options, consumer="w")
    runner = threading.Thread(target=lambda: w.run(handle_signals=False), daemon=True)
    runner.start()
    producer = Producer(client, keys, batch_size=100)
    took = []
    try:
        for wave in range(8):
            time.sleep(0.15)
            started = time.monotonic()
            producer.send(_txs(5, start=5 * wave))
            while w.stats.processed < 5 * (wave + 1):
                assert time.monotonic() - started < 10, "the wave was not decided"
                time.sleep(0.005)
            took.append(time.monotonic() - started)
    finally:
        w.request_stop()
        runner.join(10)
    assert w.width.open == 1 and max(took) < 0.75, took


def test_an_open_lane_without_a_partition_does_not_hold_the_heartbeat_back(
    client: redis.Redis, settings: Settings
) -> None:
    """One partition, two lanes: the backlog opens the second lane, which has nothing to
    read. It waits outside the gate: the first lane drains the backlog without waiting at
    each heartbeat (every ~0.1 s) for the second's empty read (up to 3 s)."""
    keys = StreamKeys(settings.stream_prefix, 1)
    scorers = [Scorer(AmountPolicy.from_settings(settings)) for _ in range(2)]
    options = WorkerOptions(batch_size=64, block_ms=3000, lease_ttl_ms=300)
    w = Worker(client, keys, scorers, options, consumer="w")
    runner = threading.Thread(target=lambda: w.run(handle_signals=False), daemon=True)
    runner.start()
    try:
        time.sleep(0.3)  # the partition taken
        started = time.monotonic()
        Producer(client, keys, batch_size=500).send(_txs(5000))
        while w.stats.processed < 5000:
            assert time.monotonic() - started < 20, "the backlog was not decided"
            time.sleep(0.005)
        took = time.monotonic() - started
    finally:
        w.request_stop()
        runner.join(10)
    assert w.stats.widened >= 1 and took < 2.0, took


def test_the_heartbeat_runs_between_the_lanes_batches() -> None:
    """`Gate.alone` waits for the batch in hand, and holds the next one back until done."""
    gate, log = Gate(), []
    inside, more = threading.Event(), threading.Event()

    def batch_in_hand() -> None:
        with gate.batch():
            inside.set()
            while not gate._held_back:  # the heartbeat is waiting for us
                threading.Event().wait(0.001)
            log.append("batch in hand done")

    def next_batch() -> None:
        more.wait(5)
        with gate.batch():
            log.append("next batch")

    threads = [threading.Thread(target=f) for f in (batch_in_hand, next_batch)]
    threads[0].start()
    inside.wait(5)
    threads[1].start()
    with gate.alone():
        more.set()  # a lane asks for its next batch while the heartbeat runs
        threading.Event().wait(0.05)
        log.append("heartbeat")
    for t in threads:
        t.join(5)
    assert log == ["batch in hand done", "heartbeat", "next batch"]


def test_a_blocked_read_takes_the_whole_pipeline_that_woke_it(
    client: redis.Redis, settings: Settings
) -> None:
    """The server wakes a blocked reader after the first XADD of a producer's pipeline; the
    batch still holds every entry of that pipeline, not that first one alone, each
    customer's in order."""
    patient = replace(settings, block_ms=10_000, stream_prefix="woken")  # alone on its keys
    worker = _worker(client, patient)
    worker.bootstrap()
    worker.leases.rebalance()
    batches: list[Any] = []
    reader = threading.Thread(target=lambda: batches.append(worker.next_batch()))
    reader.start()
    deadline = time.monotonic() + 10
    while not any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in client.client_list()):
        assert time.monotonic() < deadline, "the reader never blocked"
        time.sleep(0.01)
    Producer(client, _keys(patient)).send(_txs(20, customers=4))  # ~7,500 bytes, one write
    reader.join(timeout=10)
    assert len(batches[0].entries) == 20
    by_customer: dict[str, list[str]] = {}
    for _, _, fields in batches[0].entries:
        tx = decode_transaction(fields[PAYLOAD])
        by_customer.setdefault(tx.customer_id, []).append(tx.transaction_id)
    assert all(ids == sorted(ids, key=lambda i: int(i[2:])) for ids in by_customer.values())
