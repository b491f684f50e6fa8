"""Inputs real payment data contains, refused (or kept) alike by every path that validates a
transaction: the HTTP API, ``fraudstream produce`` and the stream workers.

- JSON nested a thousand levels deep is a 422 naming the field, never a 500.
- Ids given as JSON numbers keep their text (``1.5`` stays ``"1.5"``, ``42.0`` is ``"42"``).
- Handbook grid coordinates outside 0–100 are refused naming ``x`` / ``y``.
- Ids that are only whitespace are refused naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from apikit import KEY, post, sample_tx, start_server, stop_server
from clikit import run_cli
from fraudstream.config import Settings
from fraudstream.errors import SchemaError
from fraudstream.schema import (
    decode_label,
    decode_transaction,
    normalize_record,
    transaction_from_record,
)
from fraudstream.stream.keys import StreamKeys, partition_of
from fraudstream.stream.producer import Producer
from test_pipeline import _decisions, _worker

IDS = ("transaction_id", "customer_id", "terminal_id", "merchant_id", "card_id")
DEEP = 1000
"""The tester's depth: a ~2 KB body."""


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "transaction_id": "t1",
        "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        "customer_id": "c1",
        "terminal_id": "term1",
        "merchant_id": "m1",
        "amount": 12.5,
        "currency": "EUR",
        "channel": "card_present",
    }
    record.update(changes)
    return record


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _refused(record: dict[str, Any]) -> SchemaError:
    """The error of the JSON decoder, checked to be the importer's too."""
    with pytest.raises(SchemaError) as decoded:
        decode_transaction(json.dumps(record))
    with pytest.raises(SchemaError) as imported:
        transaction_from_record(record)
    assert (decoded.value.field, str(decoded.value)) == (imported.value.field, str(imported.value))
    return decoded.value


# --- ids given as numbers --------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_a_number_id_keeps_its_text(name: str) -> None:
    def imported(value: float) -> str:
        text: str = getattr(transaction_from_record(_record(**{name: value})), name)
        return text

    assert imported(1.5) == "1.5" and imported(1.7) == "1.7"
    assert imported(42) == imported(42.0) == "42"
    assert imported(-3.25) == "-3.25" and imported(0.1) == "0.1"
    assert imported(12345678901234567890123) == "12345678901234567890123"  # ints are exact


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1.2345678901234567e19])
def test_a_number_id_that_is_not_exact_is_refused_naming_the_field(name: str, value: float) -> None:
    with pytest.raises(SchemaError) as info:
        normalize_record(_record(**{name: value}))
    assert info.value.field == name and str(info.value).startswith(f"{name}: ")


def test_a_handbook_row_with_float_ids_keeps_them_apart() -> None:
    row = {
        "TRANSACTION_ID": 1.5,
        "TX_DATETIME": "2018-04-01 00:00:31",
        "CUSTOMER_ID": 596.0,
        "TERMINAL_ID": 3156,
        "TX_AMOUNT": 57.16,
    }
    first = transaction_from_record(row)
    second = transaction_from_record({**row, "TRANSACTION_ID": 1.7})
    assert (first.transaction_id, second.transaction_id) == ("1.5", "1.7")
    assert first.customer_id == "596" and first.terminal_id == first.merchant_id == "3156"


# --- grid coordinates ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x", "y"])
@pytest.mark.parametrize("value", [1e308, -1e308, -0.001, 100.001, float("inf")])
def test_grid_coordinates_outside_0_to_100_are_refused(name: str, value: float) -> None:
    record = _record(**{name: value})
    if value == float("inf"):  # no JSON for it: the importer only
        with pytest.raises(SchemaError) as info:
            transaction_from_record(record)
        error = info.value
    else:
        error = _refused(record)
    assert error.field == name and str(error).startswith(f"{name}: ")


def test_grid_coordinates_on_the_edges_are_valid() -> None:
    for x, y in ((0, 100), (100.0, 0.0), (50.5, 99.99)):
        assert decode_transaction(json.dumps(_record(x=x, y=y))).x == x
        assert transaction_from_record(_record(x=x, y=y)).y == y


@pytest.mark.parametrize(("name", "value"), [("lat", 90.01), ("lat", -90.01), ("lon", 180.5)])
def test_lat_lon_stay_bounded(name: str, value: float) -> None:
    assert _refused(_record(**{name: value})).field == name


# --- blank ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("blank", ["   ", "\t", " \n ", "\u00a0"])
def test_a_whitespace_only_id_is_refused_naming_the_field(name: str, blank: str) -> None:
    error = _refused(_record(**{name: blank}))
    assert error.field == name and str(error) == f"{name}: must not be blank, got {blank!r}"


def test_an_id_with_spaces_inside_is_kept() -> None:
    assert decode_transaction(json.dumps(_record(customer_id=" c 1 "))).customer_id == " c 1 "


@pytest.mark.parametrize("name", ["transaction_id", "customer_id", "terminal_id"])
def test_a_label_with_a_blank_id_is_refused_naming_the_field(name: str) -> None:
    body = {"transaction_id": "t", "is_fraud": True, "reported_at": "2020-01-01T00:00:00Z"}
    with pytest.raises(SchemaError) as info:
        decode_label(json.dumps({**body, name: "  "}))
    assert info.value.field == name


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()  # what earlier modules left (models)
    proc, base = start_server(valkey_url, tmp_path_factory.mktemp("schema-inputs"), KEY)
    try:
        yield base
    finally:
        stop_server(proc)


def _raw_tx(i: int, **raw: str) -> str:
    """`sample_tx` as JSON text, with fields given as raw JSON (a nested value)."""
    record = json.dumps(sample_tx(i))
    for name, text in raw.items():
        record = record[:-1] + f', "{name}": {text}}}'
    return record


def _deep_tx(i: int) -> str:
    fields = {k: v for k, v in sample_tx(i).items() if k != "transaction_id"}
    return '{"transaction_id": ' + _nested(DEEP) + ", " + json.dumps(fields)[1:]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/score/batch", '{"transactions": [' + _deep_tx(1) + "]}", "transactions"),
        ("/v1/score/batch", '{"transactions": [' + _nested(DEEP) + "]}", "transactions"),
        (
            "/v1/score/batch",
            '{"transactions": [' + '{"a": ' * DEEP + "1" + "}" * DEEP + "]}",
            "transactions",
        ),
        ("/v1/transactions", '{"transactions": [' + _deep_tx(2) + "]}", "transactions"),
        ("/v1/transactions", '{"transactions": [' + _nested(DEEP) + "]}", "transactions"),
        ("/v1/transactions", _deep_tx(3), "transaction_id"),
        ("/v1/transactions", _raw_tx(4, device_id=_nested(50_000)), "device_id"),
        ("/v1/transactions", _nested(50_000), ""),
        ("/v1/score", _deep_tx(5), "transaction_id"),
        ("/v1/labels", '{"transaction_id": ' + _nested(DEEP) + "}", "transaction_id"),
        ("/v1/reviews/1/resolve", '{"verdict": ' + _nested(DEEP) + "}", "verdict"),
        ("/v1/challenges/t1/verify", '{"code": ' + _nested(DEEP) + "}", "code"),
        ("/v1/models/retrain", '{"train_days": ' + _nested(DEEP) + "}", "train_days"),
        ("/v1/lists/deep", '{"values": ' + _nested(DEEP) + "}", "values"),
        ("/v1/lists/deep/remove", '{"values": [' + _nested(DEEP) + "]}", "values"),
    ],
)
def test_deep_nesting_is_a_422_naming_the_field(
    server: str, client: redis.Redis, path: str, body: str, field: str
) -> None:
    status, answer = post(server, path, body.encode())
    assert status == 422, (status, answer)
    assert answer["error"]["field"] == field, answer
    if field:
        assert answer["error"]["message"].startswith(f"{field}: "), answer
    assert not any(client.xlen(s) for s in StreamKeys("tx", 16).inputs())  # nothing queued


@pytest.mark.integration
def test_a_deep_batch_item_is_named_by_its_position(server: str) -> None:
    items = [json.dumps(sample_tx(10)), _deep_tx(11)]
    body = f'{{"transactions": [{", ".join(items)}]}}'.encode()
    status, answer = post(server, "/v1/score/batch", body)
    assert status == 422 and answer["error"]["field"] == "transactions", answer
    assert answer["error"]["message"].startswith("transactions: item 1 "), answer


@pytest.mark.integration
@pytest.mark.parametrize(("x", "y"), [(1e308, -1e308), (-1.0, 5.0), (5.0, 100.5)])
def test_the_api_refuses_grid_coordinates_out_of_range(
    server: str, client: redis.Redis, x: float, y: float
) -> None:
    bad = "x" if not 0 <= x <= 100 else "y"
    status, answer = post(server, "/v1/score", sample_tx(20, x=x, y=y))
    assert status == 422 and answer["error"]["field"] == bad, answer
    # the refused payment left no trace: the customer's next one is not "impossible travel"
    status, decision = post(server, "/v1/score", sample_tx(20, transaction_id="api-20b", x=1, y=1))
    assert status == 200 and "rule:impossible_travel" not in decision["reasons"], decision
    status, answer = post(server, "/v1/transactions", sample_tx(21, x=x, y=y))
    assert status == 422 and answer["error"]["field"] == bad, answer
    status, answer = post(server, "/v1/score/batch", {"transactions": [sample_tx(22, x=x, y=y)]})
    assert status == 200 and answer["results"][0]["error"]["field"] == bad, answer


@pytest.mark.integration
@pytest.mark.parametrize("name", IDS)
def test_the_api_refuses_whitespace_only_ids(server: str, client: redis.Redis, name: str) -> None:
    tx = sample_tx(30, **{name: "   "})
    for path in ("/v1/score", "/v1/transactions"):
        status, answer = post(server, path, tx)
        assert status == 422, (path, answer)
        assert answer["error"] == {
            "field": name,
            "message": f"{name}: must not be blank, got '   '",
        }
    status, answer = post(server, "/v1/score/batch", {"transactions": [tx, sample_tx(31)]})
    assert status == 200 and answer["results"][0]["error"]["field"] == name, answer
    assert answer["results"][1]["decision"]["transaction_id"] == "api-31"
    label = {"transaction_id": "t", "is_fraud": True, "reported_at": "2020-01-01T00:00:00Z"}
    if name in ("transaction_id", "customer_id", "terminal_id"):
        status, answer = post(server, "/v1/labels", {**label, name: " "})
        assert status == 422 and answer["error"]["field"] == name, answer


# --- produce and the stream workers ----------------------------------------------------------


@pytest.mark.integration
def test_produce_keeps_float_ids_apart_and_refuses_what_the_api_refuses(
    tmp_path: Path, settings: Settings, client: redis.Redis
) -> None:
    rows = [
        _record(transaction_id=1.5, customer_id=7, terminal_id=3.0, merchant_id=3),
        _record(transaction_id=1.7, customer_id=7, terminal_id=3.0, merchant_id=3),
        _record(transaction_id=42.0, customer_id=8, terminal_id=4, merchant_id=4),
        _record(transaction_id="far", x=1e308, y=-1e308),
        _record(transaction_id="   "),
        _record(transaction_id="deep", device_id=[[[]]]),
    ]
    path = tmp_path / "txs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {
        "FRAUDSTREAM_PARTITIONS": str(settings.partitions),
        "FRAUDSTREAM_DATA_DIR": str(tmp_path),
    }
    result = run_cli(
        "produce", str(path), "--skip-invalid", env=env, valkey_url=settings.valkey_url
    )
    assert result.returncode == 0, result.stderr
    assert "sent 3 transactions, rejected 3" in result.stdout, result.stdout
    assert "txs.jsonl:4: x: " in result.stderr, result.stderr
    assert "txs.jsonl:5: transaction_id: must not be blank" in result.stderr, result.stderr
    worker = _worker(client, settings)
    stats = worker.run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {"1.5", "1.7", "42"}
    assert stats.processed == 3 and stats.dead_lettered == 0


@pytest.mark.integration
def test_workers_dead_letter_out_of_range_coordinates_and_blank_ids(
    client: redis.Redis, settings: Settings
) -> None:
    keys = StreamKeys(settings.stream_prefix, settings.partitions)
    stream = keys.input(partition_of("c1", keys.partitions))
    payloads = {
        "x": json.dumps(_record(transaction_id="far", x=1e308, y=1.0)).encode(),
        "y": json.dumps(_record(transaction_id="low", x=1.0, y=-0.5)).encode(),
        "customer_id": json.dumps(_record(transaction_id="b", customer_id="\t")).encode(),
    }
    good = json.dumps(_record(transaction_id="ok", x=1.0, y=1.0)).encode()
    Producer(client, keys).send_to_streams([(stream, p) for p in [*payloads.values(), good]])
    _worker(client, settings).run(burst=True, handle_signals=False)
    assert set(_decisions(client)) == {"ok"}
    dead: Any = client.xrange(keys.deadletter)
    by_payload = {fields[b"payload"]: fields for _, fields in dead}
    assert len(dead) == len(payloads)
    for field, payload in payloads.items():
        record = by_payload[payload]
        assert record[b"field"].decode() == field
        assert record[b"reason"].decode().startswith(f"{field}: ")
