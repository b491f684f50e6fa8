"""Hostile input on the input streams and the API: every bad entry becomes one dead letter
(one 4xx) whose reason names the field or the problem, and the good entries around it are
all decided. What the API already refuses is tested in test_api.py / test_api_v1.py; here are
the cases those do not cover."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from apikit import KEY, post, sample_tx, start_server, stop_server
from fraudstream.config import Settings
from fraudstream.schema import Transaction, encode
from fraudstream.stream.keys import PAYLOAD, StreamKeys, partition_of
from fraudstream.stream.producer import Producer
from test_pipeline import _decisions, _worker

MB = 1_048_576


def _tx(i: int) -> Transaction:
    return Transaction(
        transaction_id=f"ok{i}",
        timestamp=datetime.now(UTC) - timedelta(minutes=60 - i),
        customer_id=f"c{i % 3}",
        terminal_id="t1",
        merchant_id="m1",
        amount=10.0 + i,
        currency="EUR",
        channel="card_present",
    )


def _with(**change: Any) -> bytes:
    """A valid transaction's JSON with fields changed (None removes one)."""
    record = json.loads(encode(_tx(99)))
    record["transaction_id"] = "bad"
    for name, value in change.items():
        if value is None:
            record.pop(name)
        else:
            record[name] = value
    return json.dumps(record).encode()


HOSTILE: dict[str, tuple[bytes, str, str]] = {
    # name: (payload, field named by the dead letter, what its reason says)
    "malformed JSON": (b'{"transaction_id": "bad", "amount": 1', "", "not valid JSON"),
    "not an object": (b"[1, 2, 3]", "", "Expected `object`, got `array`"),
    "nested a million deep": (b"[" * MB, "", "Expected `object`, got `array`"),
    "not UTF-8": (b'{"transaction_id": "\xff\xfe"}', "", "not valid JSON"),
    "amount as a string": (_with(amount="12.50"), "amount", "expected `float`, got `str`"),
    "id as a number": (_with(customer_id=42), "customer_id", "expected `str`, got `int`"),
    "channel unknown": (_with(channel="telepathy"), "channel", "invalid enum value"),
    "amount infinite": (
        _with(amount=1.5).replace(b"1.5", b"1e400"),
        "amount",
        "number out of range",
    ),
    "1 MB field": (_with(device_id="x" * MB), "device_id", "length <= 256"),
    "1 MB unknown field": (_with(padding="x" * MB), "padding", "unknown field"),
    "unknown field": (_with(is_admin=True), "is_admin", "unknown field"),
    "required field missing": (_with(amount=None), "amount", "required field is missing"),
    "time without zone": (_with(timestamp="2024-01-01T00:00:00"), "timestamp", "timezone"),
    "time not a date": (_with(timestamp="2024-13-45T99:00:00Z"), "timestamp", "datetime"),
    "time far future": (_with(timestamp="9999-12-31T23:59:59Z"), "timestamp", "in the future"),
    "time year one": (_with(timestamp="0001-01-01T00:00:00Z"), "timestamp", "before 1970"),
}


def test_each_hostile_entry_is_one_dead_letter_naming_the_problem(
    client: redis.Redis, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    good = [_tx(i) for i in range(len(HOSTILE) + 1)]
    entries: list[tuple[str, bytes]] = []
    for tx, payload in zip(good, [p for p, _, _ in HOSTILE.values()] + [b""], strict=True):
        stream = keys.input(partition_of(tx.customer_id, keys.partitions))
        entries.append((stream, encode(tx)))  # a valid one before each hostile one
        if payload:
            entries.append((stream, payload))
    Producer(client, keys).send_to_streams(entries)
    worker = _worker(client, settings)
    stats = worker.run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {t.transaction_id for t in good}
    dead: Any = client.xrange(keys.deadletter)
    by_payload = {fields[b"payload"]: fields for _, fields in dead}
    assert len(dead) == len(by_payload) == len(HOSTILE) == stats.dead_lettered
    for name, (payload, field, says) in HOSTILE.items():
        record = by_payload[payload]
        reason = record[b"reason"].decode()
        assert record[b"field"].decode() == field, f"{name}: {reason}"
        assert says in reason, f"{name}: {reason}"
        assert not field or reason.startswith(f"{field}: "), f"{name}: {reason}"


def test_an_entry_without_the_payload_field_is_dead_lettered_naming_it(
    client: redis.Redis, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    ok = _tx(1)
    stream = keys.input(partition_of(ok.customer_id, keys.partitions))
    client.xadd(stream, {b"payload": encode(_tx(2))})  # another producer's field name
    Producer(client, keys).send([ok])
    _worker(client, settings).run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {"ok1"}
    dead: Any = client.xrange(keys.deadletter)
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"field"] == PAYLOAD
    assert fields[b"reason"] == b"d: missing: the entry has no payload field (its fields: payload)"


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[str]:
    proc, base = start_server(valkey_url, tmp_path_factory.mktemp("hostile-api"), KEY)
    try:
        yield base
    finally:
        stop_server(proc)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        (sample_tx(1, amount="12.50"), "amount", "expected `float`, got `str`"),
        (sample_tx(2, customer_id=42), "customer_id", "expected `str`, got `int`"),
        (sample_tx(3, is_admin=True), "is_admin", "unknown field"),
        (sample_tx(4, device_id="x" * MB), "device_id", "length <= 256"),
        (sample_tx(5, timestamp="0001-01-01T00:00:00Z"), "timestamp", "before 1970"),
        ([1, 2, 3], "", "Expected `object`, got `array`"),
    ],
)
def test_the_api_names_the_field_of_a_hostile_body(
    server: str, body: Any, field: str, says: str
) -> None:
    status, answer = post(server, "/v1/score", body)
    assert status == 422, answer
    assert answer["error"]["field"] == field and says in answer["error"]["message"], answer


def test_the_api_refuses_malformed_json_as_the_body(server: str) -> None:
    for raw in (b'{"transaction_id": "x", "amount": 1', b'{"transaction_id": "\xff"}', b"{" * MB):
        status, answer = post(server, "/v1/score", raw)
        assert status == 422, answer
        assert answer["error"]["field"] == "", answer  # the whole body, as for a dead letter
        assert answer["error"]["message"].startswith("not valid JSON"), answer
