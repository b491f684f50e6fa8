"""The review queue over HTTP: a review decision appended by the API reaches the queue
through the sink; an analyst's key claims and resolves it; the verdict is stored as a label
and published to the workers' labels stream. Every refusal answers its own status.

One server for the module on a migrated SQLite store in its data dir; the sink runs in the
test process on the same file and the same Valkey.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from apikit import get, post, sample_tx, serving
from fraudstream.api.keys import KeyStore
from fraudstream.config import Settings
from fraudstream.schema import decode_label
from fraudstream.scoring import AmountPolicy, Scorer
from fraudstream.store import tables
from fraudstream.store.sink import Sink, SinkOptions
from fraudstream.store.tables import labels
from fraudstream.store.write import store_transactions
from fraudstream.stream.keys import PAYLOAD, StreamKeys
from fraudstream.stream.worker import Worker, WorkerOptions
from storekit import make_transaction, migrated_store

pytestmark = pytest.mark.integration

KEYS = StreamKeys("tx", 16)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reviews")


@pytest.fixture(scope="module")
def engine(data_dir: Path) -> Iterator[sa.Engine]:
    with migrated_store(data_dir) as made:
        yield made


@pytest.fixture(scope="module")
def server(data_dir: Path, engine: sa.Engine, valkey_url: str) -> Iterator[str]:
    with serving(valkey_url, data_dir) as base:
        yield base


@pytest.fixture
def analysts(client: redis.Redis) -> tuple[str, str]:
    store = KeyStore(client)
    return store.create("alice", ["review"]), store.create("bob", ["review"])


def _queued(server: str, client: redis.Redis, engine: sa.Engine, n: int) -> dict[str, Any]:
    """Score transaction ``n`` into review through the API, run the sink, and return its
    review as the queue lists it."""
    status, decision = post(server, "/v1/score", sample_tx(n, amount=1_000.0))
    assert status == 200 and decision["outcome"] == "review"
    _sink(client, engine)
    status, page = get(server, "/v1/reviews?status=open&limit=1000")
    assert status == 200
    mine = [r for r in page["reviews"] if r["transaction_id"] == f"api-{n}"]
    assert len(mine) == 1
    review: dict[str, Any] = mine[0]
    assert (review["score"], review["reasons"]) == (decision["score"], decision["reasons"])
    return review


def _sink(client: redis.Redis, engine: sa.Engine) -> None:
    options = SinkOptions(batch_size=100, block_ms=50, progress_s=0.0)
    Sink(client, engine, KEYS, options, consumer="sink:test").run(burst=True, handle_signals=False)


def _streamed_labels(client: redis.Redis) -> list[Any]:
    entries: Any = client.xrange(KEYS.labels)
    return [decode_label(fields[PAYLOAD]) for _, fields in entries]


def test_a_review_decision_is_queued_claimed_and_resolved_into_a_label(
    server: str, client: redis.Redis, engine: sa.Engine, analysts: tuple[str, str]
) -> None:
    alice, _ = analysts
    review = _queued(server, client, engine, 1)
    # the transaction came with its decision: the queue shows its amount and customer
    assert (review["status"], review["assignee"], review["amount"]) == ("open", None, 1000.0)
    assert review["customer_id"] == sample_tx(1)["customer_id"]
    path = f"/v1/reviews/{review['review_id']}"
    status, claimed = post(server, path + "/claim", None, key=alice)
    assert status == 200 and (claimed["status"], claimed["assignee"]) == ("claimed", "alice")
    assert get(server, "/v1/reviews?status=claimed", key=alice)[1]["reviews"] == [claimed]
    body = {"verdict": "genuine", "note": "customer confirmed"}
    status, done = post(server, path + "/resolve", body, key=alice)
    assert status == 200 and done["published"] is True
    assert (done["review"]["verdict"], done["review"]["note"]) == ("genuine", "customer confirmed")
    assert done["label"]["source"] == "review" and done["label"]["is_fraud"] is False
    assert _stored_labels(engine) == [("api-1", "review", False)]
    [label] = _streamed_labels(client)
    assert (label.transaction_id, label.source, label.is_fraud) == ("api-1", "review", False)
    now = datetime.now(UTC)
    chargeback = {
        "transaction_id": "api-1",
        "is_fraud": True,
        "reported_at": now.isoformat(),
        "terminal_id": "t1",
        "tx_timestamp": (now - timedelta(days=1)).isoformat(),
    }
    assert post(server, "/v1/labels", chargeback)[0] == 202
    policy = Scorer(AmountPolicy.from_settings(Settings()))
    worker = Worker(client, KEYS, policy, WorkerOptions(block_ms=50))
    stats = worker.run(burst=True, handle_signals=False)
    assert stats.labels == 2 and client.xlen(KEYS.deadletter) == 0
    assert client.xlen(KEYS.labels) == 0  # applied and deleted by the workers
    _sink(client, engine)
    assert _stored_labels(engine) == [("api-1", "chargeback", True), ("api-1", "review", False)]


def _stored_labels(engine: sa.Engine) -> list[tuple[str, str, bool]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(labels.c.transaction_id, labels.c.source, labels.c.is_fraud).where(
                labels.c.transaction_id == "api-1"
            )
        )
        return sorted((t, s, f) for t, s, f in rows)


def test_a_fraud_verdict_names_the_stored_transaction_for_the_features(
    server: str, client: redis.Redis, engine: sa.Engine, analysts: tuple[str, str]
) -> None:
    alice, _ = analysts
    tx = make_transaction("api-2", "c2", "t7")
    with engine.begin() as connection:
        store_transactions(connection, [tx])  # its terminal and time are what the label takes
    review = _queued(server, client, engine, 2)
    assert (review["amount"], review["customer_id"]) == (1_000.0, "c2")
    body = {"verdict": "fraud"}
    status, done = post(server, f"/v1/reviews/{review['review_id']}/resolve", body, key=alice)
    assert status == 200 and done["published"] is True
    [label] = _streamed_labels(client)
    assert (label.is_fraud, label.terminal_id, label.tx_timestamp) == (True, "t7", tx.timestamp)


def test_a_fraud_verdict_on_an_unknown_transaction_is_stored_not_published(
    server: str, client: redis.Redis, engine: sa.Engine, analysts: tuple[str, str]
) -> None:
    alice, _ = analysts
    review = _queued(server, client, engine, 3)
    with engine.begin() as connection:  # a decision streamed without its transaction
        connection.execute(sa.delete(tables.transactions))
    body = {"verdict": "fraud", "note": ""}
    status, done = post(server, f"/v1/reviews/{review['review_id']}/resolve", body, key=alice)
    assert status == 200 and done["published"] is False and done["label"]["is_fraud"] is True
    assert _streamed_labels(client) == []
    with engine.connect() as connection:
        found = connection.scalar(
            sa.select(labels.c.is_fraud).where(labels.c.transaction_id == "api-3")
        )
    assert found is True


def test_every_refusal_has_its_status_and_names_the_field(
    server: str, client: redis.Redis, engine: sa.Engine, analysts: tuple[str, str]
) -> None:
    alice, bob = analysts
    review = _queued(server, client, engine, 4)
    path = f"/v1/reviews/{review['review_id']}"
    assert post(server, path + "/claim", None, key=alice)[0] == 200
    assert post(server, path + "/claim", None, key=alice)[0] == 200  # one's own claim again
    status, body = post(server, path + "/claim", None, key=bob)
    assert status == 409 and body["error"]["field"] == "review_id"
    assert "claimed by 'alice'" in body["error"]["message"]
    status, body = post(server, path + "/resolve", {"verdict": "fraud"}, key=bob)
    assert status == 409 and "claimed by 'alice'" in body["error"]["message"]
    status, body = post(server, path + "/resolve", {"verdict": "maybe"}, key=alice)
    assert status == 422 and body["error"]["field"] == "verdict"
    status, body = post(server, path + "/resolve", {"note": "x"}, key=alice)
    assert status == 422 and body["error"]["field"] == "verdict"
    assert post(server, path + "/resolve", {"verdict": "genuine"}, key=alice)[0] == 200
    status, body = post(server, path + "/resolve", {"verdict": "fraud"}, key=alice)
    assert status == 409 and "resolved already (genuine by 'alice')" in body["error"]["message"]
    assert post(server, path + "/claim", None, key=bob)[0] == 409
    for unknown in ("999999", "0", "abc", "99999999999999"):
        status, body = post(server, f"/v1/reviews/{unknown}/claim", None, key=alice)
        assert status == 404 and body["error"]["field"] == "review_id"
    assert post(server, "/v1/reviews/999999/resolve", {"verdict": "fraud"})[0] == 404
    for query, field in (("status=done", "status"), ("limit=0", "limit"), ("limit=x", "limit")):
        status, body = get(server, f"/v1/reviews?{query}", key=alice)
        assert status == 422 and body["error"]["field"] == field
    scorer = KeyStore(client).create("checkout", ["score"])
    status, body = get(server, "/v1/reviews", key=scorer)
    assert status == 403 and "lacks the 'review' scope" in body["error"]["message"]
    assert post(server, path + "/claim", None, key=None)[0] == 401


def test_the_queue_is_oldest_first_and_limited(
    server: str, client: redis.Redis, engine: sa.Engine
) -> None:
    for n in (5, 6, 7):
        _queued(server, client, engine, n)
    status, page = get(server, "/v1/reviews?limit=2")
    created = [r["created_at"] for r in page["reviews"]]
    assert status == 200 and len(created) == 2 and created == sorted(created)
    everything = get(server, "/v1/reviews?limit=1000")[1]["reviews"]
    ids = [r["transaction_id"] for r in everything]
    assert ids.index("api-5") < ids.index("api-6") < ids.index("api-7")
    assert [r["transaction_id"] for r in page["reviews"]] == ids[:2]


def test_the_review_endpoints_are_documented(server: str) -> None:
    doc = get(server, "/openapi.json")[1]
    listing = doc["paths"]["/v1/reviews"]["get"]
    assert {p["name"]: p["in"] for p in listing["parameters"]} == {
        "status": "query",
        "limit": "query",
    }
    resolve = doc["paths"]["/v1/reviews/{review_id}/resolve"]["post"]
    assert set(resolve["responses"]) >= {"200", "404", "409", "422"}
    assert resolve["parameters"][0]["schema"]["type"] == "integer"
    verdict = doc["components"]["schemas"]["ReviewVerdict"]["properties"]["verdict"]
    assert verdict["enum"] == ["fraud", "genuine"]
