"""The review queue's SQL on SQLite and PostgreSQL: opened once per review decision, moved
only from the states a caller may move it from, the verdict stored as a label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from clikit import run_cli
from fraudstream.errors import ConflictError, NotFoundError
from fraudstream.store import migrate
from fraudstream.store import reviews as queue
from fraudstream.store.sink import Sink, SinkOptions
from fraudstream.store.tables import labels, reviews
from fraudstream.store.write import store_decisions, store_transactions
from fraudstream.stream.keys import StreamKeys
from storekit import T0, make_decisions, make_transaction, publish

KEYS = StreamKeys("tx", 4)
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(engine: sa.Engine) -> sa.Engine:
    migrate.upgrade(engine)
    return engine


def _queued(engine: sa.Engine, n: int) -> list[queue.Review]:
    """``n`` decisions stored (every third a review) and their reviews opened."""
    with engine.begin() as connection:
        batch = make_decisions(n)
        store_decisions(connection, batch)
        queue.open_reviews(connection, batch)
        return queue.list_reviews(connection, "open", 1000)


def test_the_sink_opens_one_review_per_review_decision_even_when_redelivered(
    client: redis.Redis, store: sa.Engine
) -> None:
    batch = make_decisions(30)
    publish(client, KEYS.decisions, batch)
    publish(client, KEYS.decisions, batch[:12])  # delivered again (a crash before the ack)
    options = SinkOptions(batch_size=10, block_ms=50, progress_s=0.0)
    stats = Sink(client, store, KEYS, options, consumer="sink:test").run(
        burst=True, handle_signals=False
    )
    with store.connect() as connection:
        ids = list(connection.scalars(sa.select(reviews.c.transaction_id)))
    expected = [d.transaction_id for d in batch if d.outcome == "review"]
    assert sorted(ids) == sorted(expected) and stats.reviews_opened == len(expected) == 10


def test_the_queue_is_oldest_first_with_the_decision_and_the_transaction(
    store: sa.Engine,
) -> None:
    opened = _queued(store, 12)
    assert [r.transaction_id for r in opened] == ["tx-1", "tx-4", "tx-7", "tx-10"]
    first = opened[0]
    assert (first.status, first.score, first.reasons) == ("open", 1, ["amount_policy"])
    assert first.created_at == T0 + timedelta(seconds=1) and first.amount is None
    with store.begin() as connection:
        store_transactions(connection, [make_transaction("tx-4", "c9", "t3")])
        page = queue.list_reviews(connection, "open", 2)
    assert [r.transaction_id for r in page] == ["tx-1", "tx-4"]
    assert (page[1].amount, page[1].customer_id, page[1].tx_timestamp) == (1_000.0, "c9", T0)


def test_claim_then_resolve_stores_the_verdict_and_its_label(store: sa.Engine) -> None:
    review = _queued(store, 3)[0]
    with store.begin() as connection:
        claimed = queue.claim(connection, review.review_id, "alice", NOW)
        again = queue.claim(connection, review.review_id, "alice", NOW)  # one's own: no change
        assert (claimed.status, claimed.assignee) == ("claimed", "alice") and again == claimed
        done, label = queue.resolve(
            connection, review.review_id, "alice", "genuine", "called the customer", NOW
        )
        assert queue.list_reviews(connection, "claimed") == []
        assert queue.list_reviews(connection, "resolved") == [done]
        stored = connection.execute(sa.select(labels)).mappings().one()
    assert (done.verdict, done.note, done.updated_at) == ("genuine", "called the customer", NOW)
    assert (label.source, label.is_fraud, label.reported_at) == ("review", False, NOW)
    assert stored["transaction_id"] == review.transaction_id and stored["source"] == "review"
    assert stored["is_fraud"] is False


def test_a_review_moves_only_from_open_or_from_the_callers_claim(store: sa.Engine) -> None:
    first, second = _queued(store, 6)
    with store.begin() as connection:
        queue.claim(connection, first.review_id, "alice", NOW)
        with pytest.raises(ConflictError, match="claimed by 'alice'") as claimed:
            queue.claim(connection, first.review_id, "bob", NOW)
        assert claimed.value.field == "review_id"
        with pytest.raises(ConflictError, match="claimed by 'alice'"):
            queue.resolve(connection, first.review_id, "bob", "fraud", "", NOW)
        queue.resolve(connection, second.review_id, "bob", "fraud", "", NOW)  # never claimed
        with pytest.raises(ConflictError, match=r"resolved already \(fraud by 'bob'\)"):
            queue.resolve(connection, second.review_id, "bob", "genuine", "", NOW)
        with pytest.raises(ConflictError, match="resolved already"):
            queue.claim(connection, second.review_id, "bob", NOW)
        with pytest.raises(NotFoundError, match="no review 999"):
            queue.claim(connection, 999, "alice", NOW)
        assert [r.assignee for r in queue.list_reviews(connection, "claimed")] == ["alice"]


@pytest.mark.parametrize("review_id", [0, -1, 2**31, 10**23])
def test_an_id_no_review_can_have_is_not_found_before_the_database_sees_it(
    store: sa.Engine, review_id: int
) -> None:
    """10**23 made SQLite's driver raise ``OverflowError`` (a traceback from ``reviews
    claim``); an id past PostgreSQL's ``INTEGER`` is refused by it as bad data."""
    _queued(store, 3)
    with store.begin() as connection:
        for act in (
            lambda: queue.claim(connection, review_id, "alice", NOW),
            lambda: queue.resolve(connection, review_id, "alice", "fraud", "", NOW),
            lambda: queue.get_review(connection, review_id),
        ):
            with pytest.raises(NotFoundError, match=f"no review {review_id}"):
                act()


def test_the_cli_says_a_huge_review_id_names_no_review(tmp_path: Path) -> None:
    done = run_cli(
        "reviews", "claim", str(10**23), "--as", "bob", env={"FRAUDSTREAM_DATA_DIR": str(tmp_path)}
    )
    assert done.returncode != 0
    assert done.stderr.strip() == f"error: review_id: no review {10**23}"
