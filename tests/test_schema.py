from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudstream.errors import SchemaError
from fraudstream.schema import (
    Decision,
    Transaction,
    decode_decision,
    decode_label,
    decode_transaction,
    encode,
    transaction_from_record,
)


def _valid(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "transaction_id": "t1",
        "timestamp": "2018-04-01T10:00:00+00:00",
        "customer_id": "c1",
        "terminal_id": "term1",
        "merchant_id": "m1",
        "amount": 12.5,
        "currency": "EUR",
        "channel": "ecommerce",
    }
    record.update(changes)
    return record


def _decode(record: dict[str, Any]) -> Transaction:
    return decode_transaction(json.dumps(record).encode())


def test_valid_transaction_round_trips() -> None:
    tx = _decode(_valid(ip="10.0.0.1", lat=48.8, lon=2.3))
    assert tx.amount == 12.5 and tx.timestamp.tzinfo is not None
    assert decode_transaction(encode(tx)) == tx


@given(
    st.one_of(
        st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
        st.integers(max_value=-1),
    )
)
def test_negative_amount_names_field_and_value(amount: float) -> None:
    with pytest.raises(SchemaError) as info:
        _decode(_valid(amount=amount))
    assert info.value.field == "amount"
    assert str(info.value) == f"amount: must be >= 0, got {float(amount):g}"


@pytest.mark.parametrize("amount", [0, 0.0, -0.0, 1e12])
def test_zero_and_the_ceiling_are_valid_amounts(amount: float) -> None:
    assert _decode(_valid(amount=amount)).amount == amount
    assert transaction_from_record(_valid(amount=amount)).amount == amount


@pytest.mark.parametrize("amount", [1e17, 1.0000001e12, 1e308])
def test_amount_above_the_ceiling_is_refused(amount: float) -> None:
    with pytest.raises(SchemaError, match=r"^amount: must be at most 1e\+12, got ") as info:
        _decode(_valid(amount=amount))
    assert info.value.field == "amount"


def test_out_of_range_amount_is_rejected() -> None:
    with pytest.raises(SchemaError, match=r"^amount: number out of range$"):
        decode_transaction(json.dumps(_valid()).replace("12.5", "1e999").encode())
    with pytest.raises(SchemaError, match=r"^amount: must be finite, got inf$"):
        transaction_from_record(_valid(amount=float("inf")))


def test_example_message_from_the_issue() -> None:
    with pytest.raises(SchemaError, match=r"^amount: must be >= 0, got -3$"):
        _decode(_valid(amount=-3))


REQUIRED = [
    "transaction_id",
    "timestamp",
    "customer_id",
    "terminal_id",
    "merchant_id",
    "amount",
    "currency",
    "channel",
]


@given(st.sampled_from(REQUIRED))
def test_missing_field_is_named(name: str) -> None:
    record = _valid()
    del record[name]
    with pytest.raises(SchemaError) as info:
        _decode(record)
    assert info.value.field == name
    assert "required field is missing" in str(info.value)


def test_a_value_off_a_fields_choices_is_told_the_choices() -> None:
    """A bank's export says "pos" or "online": the error says what the field takes."""
    with pytest.raises(SchemaError) as tx:
        _decode(_valid(channel="pos"))
    assert str(tx.value) == "channel: invalid enum value 'pos' (one of card_present, ecommerce)"
    label = {"transaction_id": "t1", "is_fraud": True, "reported_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(SchemaError) as lb:
        decode_label(json.dumps({**label, "source": "bank"}).encode())
    assert lb.value.field == "source" and "(one of chargeback, review, import)" in str(lb.value)


@given(
    st.text(min_size=1, max_size=6).filter(
        lambda s: not (len(s) == 3 and s.isupper() and s.isascii() and s.isalpha())
    )
)
def test_bad_currency_is_named(currency: str) -> None:
    with pytest.raises(SchemaError) as info:
        _decode(_valid(currency=currency))
    assert info.value.field == "currency"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"timestamp": "2018-04-01T10:00:00"}, "timestamp"),  # naive: event time must be aware
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"channel": "fax"}, "channel"),
        ({"mcc": "12a4"}, "mcc"),
        ({"lat": 123.0}, "lat"),
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": 7}, "customer_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_field_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(SchemaError) as info:
        _decode(_valid(**changes))
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@given(st.binary(max_size=64))
def test_garbage_never_crashes_the_decoder(data: bytes) -> None:
    try:
        decode_transaction(data)
    except SchemaError as exc:
        assert str(exc)


def test_handbook_columns_are_accepted() -> None:
    row = {
        "TRANSACTION_ID": 0,
        "TX_DATETIME": "2018-04-01 00:00:31",
        "CUSTOMER_ID": 596,
        "TERMINAL_ID": 3156,
        "TX_AMOUNT": 57.16,
        "TX_TIME_SECONDS": 31,
        "TX_TIME_DAYS": 0,
        "TX_FRAUD": 0,
        "TX_FRAUD_SCENARIO": 0,
    }
    tx = transaction_from_record(row)
    assert tx.transaction_id == "0" and tx.customer_id == "596" and tx.terminal_id == "3156"
    assert tx.merchant_id == "3156" and tx.currency == "EUR" and tx.channel == "card_present"
    assert tx.timestamp == datetime(2018, 4, 1, 0, 0, 31, tzinfo=UTC)
    assert tx.amount == 57.16


def test_handbook_row_with_bad_amount_names_our_field() -> None:
    with pytest.raises(SchemaError, match="^amount: must be >= 0, got -0.01$"):
        transaction_from_record(
            {
                "TRANSACTION_ID": 1,
                "TX_DATETIME": "2018-04-01 00:00:31",
                "CUSTOMER_ID": 1,
                "TERMINAL_ID": 2,
                "TX_AMOUNT": -0.01,
            }
        )


def test_decision_score_bounds() -> None:
    base = {
        "transaction_id": "t",
        "outcome": "approve",
        "reasons": [],
        "model_version": "m",
        "rules_version": "r",
        "latency_ms": 1.0,
        "decided_at": "2020-01-01T00:00:00Z",
    }
    assert decode_decision(json.dumps({**base, "score": 1000})).score == 1000
    with pytest.raises(Exception, match="score"):
        decode_decision(json.dumps({**base, "score": 1001}))
    assert isinstance(decode_decision(json.dumps({**base, "score": 0})), Decision)


def test_label_requires_aware_report_time() -> None:
    with pytest.raises(SchemaError) as info:
        decode_label(b'{"transaction_id":"t","is_fraud":true,"reported_at":"2020-01-01T00:00"}')
    assert info.value.field == "reported_at"


@pytest.mark.parametrize("field", ["terminal_id", "customer_id"])
def test_label_with_an_empty_id_names_the_field(field: str) -> None:
    body = {"transaction_id": "t", "is_fraud": True, "reported_at": "2020-01-01T00:00:00Z"}
    body[field] = ""
    with pytest.raises(SchemaError) as info:
        decode_label(json.dumps(body))
    assert info.value.field == field
