"""The API's natural batching: a lone request goes at once; requests that arrive while a batch
is being decided go together as the next one. On the real scorer and Valkey; the batch in
flight is held open through the record hook (it runs in the batch's thread)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis
from redis.typing import EncodableT, FieldT

from apikit import feature_state, sample_tx
from fraudstream.api import batcher as batcher_module
from fraudstream.api.batcher import REPLY_SPIN_S, Answer, DecideThread, Keeper, MicroBatcher
from fraudstream.config import Settings
from fraudstream.features.wire import StateConflict
from fraudstream.schema import Decision, Explanation, Transaction, decode_transaction
from fraudstream.scoring import build_scorer
from fraudstream.stream.decided import AlreadyDecided, DecidedStore, Undecided


def _tx(i: int) -> Transaction:
    return decode_transaction(json.dumps(sample_tx(i)))


def _entry(d: Decision, tx: Transaction, why: Explanation | None) -> dict[FieldT, EncodableT]:
    return {"d": d.transaction_id}


def _keeper(decided: DecidedStore, on_kept: Any = None) -> Keeper:
    """Decisions kept and streamed to ``s`` (their ids), ``on_kept`` told of the kept."""
    return Keeper(decided, "s", 99, _entry, *([on_kept] if on_kept else []))


class HeldFirst:
    """An ``on_kept`` hook that holds the first batch in flight until the test releases it,
    and keeps each batch's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.in_flight = threading.Event()
        self.release = threading.Event()

    def __call__(self, decisions: Sequence[Decision]) -> None:
        self.sizes.append(len(decisions))
        if len(self.sizes) == 1:
            self.in_flight.set()
            assert self.release.wait(30), "the test never released the first batch"


def test_requests_arriving_during_a_batch_go_together_as_the_next(
    settings: Settings, client: redis.Redis
) -> None:
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)
    held = HeldFirst()
    sizes, first_in_flight, release = held.sizes, held.in_flight, held.release
    batcher = MicroBatcher(scorer, _keeper(decided, held))

    async def scenario() -> list[str]:
        lone = asyncio.ensure_future(batcher.score(_tx(0), time.time()))
        while not first_in_flight.is_set():  # the lone request went without waiting
            await asyncio.sleep(0.005)
        late = [asyncio.ensure_future(batcher.score(_tx(i), time.time())) for i in range(1, 21)]
        await asyncio.sleep(0.05)
        assert sizes == [1]  # the others wait for the batch in flight, not for a timer
        release.set()
        answers = [await lone, *[await f for f in late]]
        return [a.decision.transaction_id for a in answers]

    ids = asyncio.run(scenario())
    assert ids == [f"api-{i}" for i in range(21)]
    assert sizes == [1, 20]


def test_after_a_batch_of_concurrent_requests_the_next_waits_for_as_many(
    settings: Settings, client: redis.Redis
) -> None:
    """Requests answered a moment ago come back: a request that arrived during a batch of
    eight does not go alone (it used to, and batches alternated between one and the rest)
    but waits for the eight the batch answered, and goes with them. Neither that wait, once
    they came, nor anything after the wait found nobody or after a small batch, waits for
    the timer (2 s here: a wait fails the test's 1.5 s)."""
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)
    held = HeldFirst()
    sizes, first_in_flight, release = held.sizes, held.in_flight, held.release
    batcher = MicroBatcher(scorer, _keeper(decided, held), max_wait_s=2.0)

    async def scenario() -> None:
        eight = [asyncio.ensure_future(batcher.score(_tx(i), time.time())) for i in range(8)]
        while not first_in_flight.is_set():
            await asyncio.sleep(0.005)
        during = asyncio.ensure_future(batcher.score(_tx(8), time.time()))
        release.set()
        await asyncio.gather(*eight)
        await asyncio.sleep(0.05)
        assert sizes == [8]  # the one that came during the batch waits for company
        back = []
        for i in range(9, 17):  # one by one, as answered clients come back
            back.append(asyncio.ensure_future(batcher.score(_tx(i), time.time())))
            await asyncio.sleep(0.01)
        await asyncio.wait_for(asyncio.gather(during, *back), 1.5)
        assert sizes == [8, 9]
        await asyncio.sleep(2.5)  # nobody came: the batcher is idle
        await asyncio.wait_for(batcher.score_many([_tx(17), _tx(18)], time.time()), 1.5)
        await asyncio.wait_for(batcher.score(_tx(19), time.time()), 1.5)  # after 2: at once

    asyncio.run(scenario())
    assert sizes == [8, 9, 2, 1]


def test_a_failed_batch_tells_every_waiting_request(
    settings: Settings, client: redis.Redis
) -> None:
    scorer = build_scorer(settings, client)

    decided = DecidedStore(client, settings.stream_prefix)
    down = threading.Event()
    down.set()

    def entry(d: Decision, tx: Transaction, why: Explanation | None) -> dict[FieldT, EncodableT]:
        if down.is_set():
            raise redis.ConnectionError("valkey went away")
        return {"d": "x"}

    batcher = MicroBatcher(scorer, Keeper(decided, "s", 99, entry))
    before = feature_state(client)

    async def scenario() -> list[BaseException | None]:
        futures = [asyncio.ensure_future(batcher.score(_tx(i), time.time())) for i in range(5)]
        done = await asyncio.gather(*futures, return_exceptions=True)
        # the features were computed, their write held for the decisions: dropped with them
        assert feature_state(client) == before
        down.clear()
        after = await batcher.score(_tx(0), time.time())  # the batcher still works
        assert not after.replay  # nothing was kept when recording failed: decided afresh
        return [d if isinstance(d, BaseException) else None for d in done]

    failures = asyncio.run(scenario())
    assert all(isinstance(f, redis.ConnectionError) for f in failures)


def test_a_lone_request_is_kept_in_the_transaction_that_stores_its_features(
    settings: Settings, client: redis.Redis
) -> None:
    """One ``MULTI``/``EXEC`` stores the customer's new state and keeps and streams the
    decision (a ``SET`` and an ``XADD`` inside it, under the ``WATCH`` of the id's key):
    both or neither, and the request waits on Valkey twice, not three times (no script of
    its own after the write)."""
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)
    batcher = MicroBatcher(scorer, _keeper(decided))
    assert scorer.features is not None and scorer.features.hold_writes
    asyncio.run(batcher.score(_tx(0), time.time()))  # scripts and connections warm
    before = feature_state(client)
    client.config_resetstat()
    answer = asyncio.run(batcher.score(_tx(1), time.time()))
    stats: Any = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): v["calls"] for name, v in stats.items()}
    assert calls.get("exec") == 1 and calls.get("xadd") == 1
    assert "eval" not in calls and "evalsha" not in calls
    assert decided.get_many(["api-1"]) == [answer.decision] and not answer.replay
    streamed: Any = client.xrange("s")
    assert [fields[b"d"] for _, fields in streamed] == [b"api-0", b"api-1"]
    assert feature_state(client) != before


class KeptMeanwhile(Undecided):
    """Right after a batch's check of its ids is delivered (found undecided, their keys
    ``WATCH``ed; or some found decided, the batch about to go again), another process keeps
    the decision ``other``: once."""

    client: redis.Redis
    other: Decision | None = None

    def deliver(self, replies: list[Any]) -> None:
        try:
            super().deliver(replies)
        finally:
            if KeptMeanwhile.other is not None:
                DecidedStore(KeptMeanwhile.client, "tx").keep([KeptMeanwhile.other])
                KeptMeanwhile.other = None


def test_a_decision_kept_meanwhile_by_another_process_wins_and_counts_once(
    settings: Settings,
    client: redis.Redis,
    valkey_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kept with a plain ``SET`` in the batch's transaction, a decision still never
    overwrites one another process kept between the batch's read and its write: the
    ``WATCH`` on the id aborts the transaction (nothing of it stored), the batch goes again,
    finds the id decided and answers with that decision as a replay; the customer's
    features count the transaction once (the other process's), the stream has no entry of
    ours."""
    monkeypatch.setattr(batcher_module, "Undecided", KeptMeanwhile)
    scorer = build_scorer(settings, client)
    engine = scorer.features
    assert engine is not None
    decided = DecidedStore(client, settings.stream_prefix)
    assert decided.prefix == "tx"
    batcher = MicroBatcher(scorer, _keeper(decided))
    asyncio.run(batcher.score(_tx(1), time.time()))
    # another process scored it (its features count) and keeps it at the worst moment
    theirs = build_scorer(settings, client).score_batch([_tx(8)])[0]
    with redis.Redis.from_url(valkey_url) as other:
        KeptMeanwhile.client, KeptMeanwhile.other = other, theirs
        state = feature_state(client)
        answer = asyncio.run(batcher.score(_tx(8), time.time()))
    assert answer.replay and answer.decision == theirs
    assert decided.get_many(["api-8"]) == [theirs]
    assert feature_state(client) == state  # our attempt stored nothing
    streamed: Any = client.xrange("s")
    assert [fields[b"d"] for _, fields in streamed] == [b"api-1"]
    assert engine.stats.conflicts == 1


def test_ids_decided_by_others_between_passes_are_all_replayed(
    settings: Settings,
    client: redis.Redis,
    valkey_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch finds one id decided and goes again without it; another id decided meanwhile
    is found by that pass's check in turn (it used to go unchecked), and so on until the
    rest are new: every request answered, the decided ones as replays."""
    monkeypatch.setattr(batcher_module, "Undecided", KeptMeanwhile)
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)
    batcher = MicroBatcher(scorer, _keeper(decided))
    first = asyncio.run(batcher.score(_tx(1), time.time())).decision
    theirs = build_scorer(settings, client).score_batch([_tx(2)])[0]
    with redis.Redis.from_url(valkey_url) as other:
        KeptMeanwhile.client, KeptMeanwhile.other = other, theirs
        answers = asyncio.run(batcher.score_many([_tx(1), _tx(2), _tx(3)], time.time()))
    assert [(a.decision.transaction_id, a.replay) for a in answers] == [
        ("api-1", True), ("api-2", True), ("api-3", False)
    ]  # fmt: skip
    assert answers[0].decision == first and answers[1].decision == theirs
    streamed: Any = client.xrange("s")
    assert [fields[b"d"] for _, fields in streamed] == [b"api-1", b"api-3"]


def test_the_batchers_feature_round_trips_poll_for_their_replies(
    settings: Settings, client: redis.Redis
) -> None:
    """A worker's engine sleeps on its socket at once (its other lane computes meanwhile);
    the API's batcher makes its engine poll first (`REPLY_SPIN_S`), and it still decides."""
    scorer = build_scorer(settings, client)
    assert scorer.features is not None and scorer.features.reply_spin_s == 0.0
    decided = DecidedStore(client, settings.stream_prefix)

    batcher = MicroBatcher(scorer, _keeper(decided))
    assert scorer.features.reply_spin_s == REPLY_SPIN_S > 0
    with scorer.features.ctx.wire.session() as session:
        assert session.spin_s == REPLY_SPIN_S
    answers = asyncio.run(batcher.score_many([_tx(0), _tx(1)], time.time()))
    assert [a.decision.transaction_id for a in answers] == ["api-0", "api-1"]


def test_the_idempotency_check_rides_with_the_read_and_abandons_it_before_any_write(
    settings: Settings, client: redis.Redis
) -> None:
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)
    assert scorer.carries(client)
    kept = scorer.score_batch([_tx(1)])
    decided.keep(kept)
    state = feature_state(client)
    assert state
    again = [_tx(2), _tx(1)]
    with pytest.raises(AlreadyDecided) as raised:
        scorer.score_explained(again, riders=Undecided(decided, ["api-2", "api-1"]))
    assert raised.value.found == {"api-1": kept[0]}
    assert feature_state(client) == state  # nothing of the batch was written
    fresh = scorer.score_explained([_tx(2)], riders=Undecided(decided, ["api-2"]))
    assert [d.transaction_id for d in fresh.decisions] == ["api-2"]
    assert feature_state(client) != state


def test_a_batch_holding_decided_ids_scores_only_the_new_ones_once(
    settings: Settings, client: redis.Redis
) -> None:
    scorer = build_scorer(settings, client)
    decided = DecidedStore(client, settings.stream_prefix)

    batcher = MicroBatcher(scorer, _keeper(decided))

    async def scenario() -> tuple[list[Answer], list[Answer]]:
        first = await batcher.score_many([_tx(1)], time.time())
        batch = [_tx(2), _tx(1), _tx(3), _tx(2)]
        return first, await batcher.score_many(batch, time.time())

    first, answers = asyncio.run(scenario())
    assert [(a.decision.transaction_id, a.replay) for a in answers] == [
        ("api-2", False), ("api-1", True), ("api-3", False), ("api-2", True)
    ]  # fmt: skip
    assert answers[1].decision == first[0].decision
    assert answers[3].decision == answers[0].decision
    streamed: Any = client.xrange("s")
    assert [fields[b"d"] for _, fields in streamed] == [b"api-1", b"api-2", b"api-3"]


class WrittenMeanwhile(Undecided):
    """The batch's read delivered (its ``WATCH`` in place, its write not yet sent), another
    writer stores the customer — for the next ``times`` attempts: each of them finds the
    state changed at its ``EXEC``, as when another API process or a worker scores the same
    customer at that moment. A real write by another client, at the one moment that counts,
    every time (a writer on a timer of its own missed some attempts on a loaded host)."""

    times = 0
    client: redis.Redis
    key = ""

    def deliver(self, replies: list[Any]) -> None:
        super().deliver(replies)
        if WrittenMeanwhile.times > 0:
            WrittenMeanwhile.times -= 1
            WrittenMeanwhile.client.expire(WrittenMeanwhile.key, 3600)


@pytest.fixture
def written_meanwhile(
    monkeypatch: pytest.MonkeyPatch, valkey_url: str
) -> Iterator[type[WrittenMeanwhile]]:
    monkeypatch.setattr(batcher_module, "Undecided", WrittenMeanwhile)
    with redis.Redis.from_url(valkey_url) as other:
        WrittenMeanwhile.client = other
        yield WrittenMeanwhile
    WrittenMeanwhile.times = 0


def test_a_batch_whose_customer_another_writer_changes_is_computed_again_until_it_stops(
    settings: Settings, client: redis.Redis, written_meanwhile: type[WrittenMeanwhile]
) -> None:
    """More conflicts in a row than `RETRIES` (all the attempts there were before): the
    batch goes through at the next attempt, counted once in the features."""
    scorer = build_scorer(settings, client)
    engine = scorer.features
    assert engine is not None
    decided = DecidedStore(client, settings.stream_prefix)
    batcher = MicroBatcher(scorer, _keeper(decided))
    asyncio.run(batcher.score(_tx(1), time.time()))  # the customer has state to change
    written_meanwhile.key = engine.ctx.customer_key("c1")
    written_meanwhile.times = batcher_module.RETRIES + 2
    answer = asyncio.run(batcher.score(_tx(8), time.time()))
    assert engine.stats.conflicts == batcher_module.RETRIES + 2
    assert answer.decision.transaction_id == "api-8" and not answer.replay
    counts = engine.compute_batch([_tx(15)])[:, engine.names.index("customer_tx_count_1d")]
    assert counts.tolist() == [3.0]  # api-1, api-8 once, and api-15 itself


def test_a_batch_still_contended_after_the_budget_fails(
    settings: Settings,
    client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    written_meanwhile: type[WrittenMeanwhile],
) -> None:
    monkeypatch.setattr(batcher_module, "CONFLICT_BUDGET_S", 0.1)
    scorer = build_scorer(settings, client)
    engine = scorer.features
    assert engine is not None
    decided = DecidedStore(client, settings.stream_prefix)
    batcher = MicroBatcher(scorer, _keeper(decided))
    asyncio.run(batcher.score(_tx(1), time.time()))
    written_meanwhile.key = engine.ctx.customer_key("c1")
    written_meanwhile.times = 10**6
    started = time.monotonic()
    with pytest.raises(StateConflict, match="changed by another writer"):
        asyncio.run(batcher.score(_tx(8), time.time()))
    assert 0.1 <= time.monotonic() - started < 5
    assert engine.stats.conflicts > batcher_module.RETRIES
    assert decided.get_many(["api-8"]) == [None]


def test_the_decide_thread_runs_off_the_loop_reports_errors_and_leaves_when_idle() -> None:
    lane = DecideThread()
    lane.IDLE_S = 0.2

    def boom() -> None:
        raise ValueError("bad batch")

    async def scenario() -> None:
        here = threading.get_ident()
        there = await lane.run(threading.get_ident)
        assert there != here
        assert await lane.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(ValueError, match="bad batch"):
            await lane.run(boom)
        assert await lane.run(lambda: "still serving") == "still serving"
        thread = lane._thread
        assert thread is not None
        thread.join(5)  # idle: it leaves
        assert not thread.is_alive() and lane._thread is None
        assert await lane.run(lambda: "started again") == "started again"

    asyncio.run(scenario())
