"""Step-up challenges on SQLite and PostgreSQL, on the real Valkey, with a clock the test
moves: the right code approves, the last wrong one blocks, an unanswered challenge expires
into a block by the sink's sweep, and every final is stored, streamed once and kept for a
retried request, even when Valkey was down at the moment the challenge closed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis
import sqlalchemy as sa

from fraudstream.challenges import ChallengeDesk, code_for, is_final
from fraudstream.config import Settings
from fraudstream.errors import ConflictError, NotFoundError
from fraudstream.schema import Decision
from fraudstream.store import migrate
from fraudstream.store.sink import Sink, SinkOptions
from fraudstream.store.tables import challenges, decisions
from fraudstream.stream.decided import DecidedStore
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from storekit import T0, make_decisions, publish

KEYS = StreamKeys("tx", 4)
TTL_S = 300


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(seconds=30)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(engine: sa.Engine) -> sa.Engine:
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _desk(engine: sa.Engine, client: redis.Redis, tmp_path: Path, clock: Clock) -> ChallengeDesk:
    settings = Settings(
        data_dir=str(tmp_path), challenge_ttl_s=TTL_S, challenge_attempts=3, partitions=4
    )
    return ChallengeDesk(engine, client, settings, clock=clock)


def _stepped_up(client: redis.Redis, n: int) -> list[Decision]:
    """``n`` step-up decisions, streamed and kept as a worker would."""
    batch = [
        msgspec.structs.replace(d, outcome="step_up", reasons=["rule:new_device"])
        for d in make_decisions(n)
    ]
    publish(client, KEYS.decisions, batch)
    DecidedStore(client, "tx").keep(batch)
    return batch


def _finals(client: redis.Redis) -> list[Decision]:
    entries: Any = client.xrange(KEYS.decisions)
    streamed = [msgspec.json.decode(f[PAYLOAD], type=Decision) for _, f in entries]
    return [d for d in streamed if is_final(d)]


def _sink(client: redis.Redis, engine: sa.Engine, desk: ChallengeDesk | None = None) -> Sink:
    options = SinkOptions(batch_size=50, block_ms=50, progress_s=0.0, challenge_ttl_s=TTL_S)
    sink = Sink(client, engine, KEYS, options, consumer="sink:test", challenges=desk)
    sink.run(burst=True, handle_signals=False)
    return sink


def _row(engine: sa.Engine, tx: str) -> sa.RowMapping:
    with engine.connect() as connection:
        query = sa.select(challenges).where(challenges.c.transaction_id == tx)
        return connection.execute(query).mappings().one()


def test_the_right_code_approves_and_the_final_is_stored_streamed_and_kept(
    client: redis.Redis, store: sa.Engine, tmp_path: Path, clock: Clock
) -> None:
    first = _stepped_up(client, 1)[0]
    desk = _desk(store, client, tmp_path, clock)
    stats = _sink(client, store).stats
    assert stats.challenges_opened == 1
    code = code_for(desk.secret, "tx-0")
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    assert desk.verify("tx-0", wrong).attempts_left == 2
    answer = desk.verify("tx-0", code)
    assert (answer.status, answer.outcome, answer.attempts_left) == ("passed", "approve", 0)
    [final] = _finals(client)
    assert (final.transaction_id, final.outcome) == ("tx-0", "approve")
    assert final.reasons == ["rule:new_device", "challenge:passed"]
    assert final.stages["challenge"] == pytest.approx(30_000.0)
    assert final.decided_at == clock.now and final.score == first.score
    kept = DecidedStore(client, "tx").get("tx-0")
    assert kept is not None and kept.outcome == "approve"  # a retried request gets the final
    row = _row(store, "tx-0")
    assert (row["status"], row["final_outcome"], row["attempts"]) == ("passed", "approve", 2)
    assert row["streamed_at"] is not None
    with pytest.raises(ConflictError, match="passed already"):
        desk.verify("tx-0", code)
    # the sink sees the final, keeps the first decision, counts the final
    again = _sink(client, store, desk).stats
    assert (again.finals, again.stored, again.duplicates) == (1, 0, 0)
    with store.connect() as connection:
        outcome = connection.scalar(sa.select(decisions.c.outcome))
    assert outcome == "step_up"
    assert len(_finals(client)) == 1  # the sweep streamed nothing twice


def test_the_last_wrong_code_blocks_and_racing_codes_spend_one_attempt_each(
    client: redis.Redis, store: sa.Engine, tmp_path: Path, clock: Clock
) -> None:
    _stepped_up(client, 2)
    desk = _desk(store, client, tmp_path, clock)
    wrong = str((int(code_for(desk.secret, "tx-1")) + 7) % 10**6).zfill(6)
    # the merchant is quicker than the sink: the challenge opens from the kept decision
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: desk.verify("tx-1", wrong), range(3)))
    assert sorted(a.attempts_left for a in answers) == [0, 1, 2]
    assert [a.outcome for a in answers].count("block") == 1
    row = _row(store, "tx-1")
    assert (row["status"], row["final_outcome"], row["attempts"]) == ("failed", "block", 3)
    [final] = _finals(client)
    assert (final.outcome, final.reasons[-1]) == ("block", "challenge:failed")
    with pytest.raises(ConflictError, match="failed already"):
        desk.verify("tx-1", code_for(desk.secret, "tx-1"))


def test_an_unanswered_challenge_expires_into_a_block_by_the_sweep(
    client: redis.Redis, store: sa.Engine, tmp_path: Path, clock: Clock
) -> None:
    _stepped_up(client, 3)
    desk = _desk(store, client, tmp_path, clock)
    _sink(client, store, desk)
    assert _finals(client) == []  # none is due yet
    clock.now = T0 + timedelta(seconds=1 + TTL_S)  # tx-0 and tx-1 are due, tx-2 not
    desk.sweep()
    finals = _finals(client)
    assert sorted(f.transaction_id for f in finals) == ["tx-0", "tx-1"]
    assert {(f.outcome, f.reasons[-1]) for f in finals} == {("block", "challenge:expired")}
    assert _row(store, "tx-2")["status"] == "pending"
    # a code after the expiry closes that one too, with a block
    clock.now += timedelta(seconds=5)
    late = desk.verify("tx-2", code_for(desk.secret, "tx-2"))
    assert (late.status, late.outcome) == ("expired", "block")
    desk.sweep()
    assert len(_finals(client)) == 3


def test_a_final_not_streamed_while_valkey_was_down_is_streamed_by_the_sweep(
    client: redis.Redis, store: sa.Engine, tmp_path: Path, clock: Clock
) -> None:
    _stepped_up(client, 1)
    desk = _desk(store, client, tmp_path, clock)
    _sink(client, store)
    closed_port = redis.Redis(port=_unused_port(), socket_connect_timeout=0.5)
    down = _desk(store, closed_port, tmp_path, clock)
    answer = down.verify("tx-0", code_for(down.secret, "tx-0"))
    assert answer.outcome == "approve"  # stored: the answer stands
    assert _finals(client) == [] and _row(store, "tx-0")["streamed_at"] is None
    desk.sweep()
    assert _finals(client) == []  # the API may still be streaming it: not yet
    clock.now += timedelta(seconds=11)
    desk.sweep()
    [final] = _finals(client)
    assert (final.outcome, final.decided_at) == ("approve", T0 + timedelta(seconds=30))
    assert _row(store, "tx-0")["streamed_at"] is not None


def test_what_has_no_challenge_is_refused_naming_the_transaction(
    client: redis.Redis, store: sa.Engine, tmp_path: Path, clock: Clock
) -> None:
    approved = make_decisions(1, start=3)  # tx-3: an approve
    DecidedStore(client, "tx").keep(approved)
    desk = _desk(store, client, tmp_path, clock)
    with pytest.raises(ConflictError, match="'tx-3' was decided approve"):
        desk.verify("tx-3", "000000")
    with pytest.raises(NotFoundError, match="no challenge for 'nope'"):
        desk.look("nope")


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
