"""Decode + validate one transaction: msgspec (chosen) vs pydantic v2.

Run: ``python benchmarks/bench_schema.py [--json]``. Prints µs per decode (median of 7 runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from datetime import datetime
from typing import Annotated, Literal

import pydantic

from fraudstream.schema import Transaction, decode_transaction, encode, transaction_from_record

PAYLOAD = encode(
    transaction_from_record(
        {
            "transaction_id": "tx-123456",
            "timestamp": "2024-05-01T12:34:56+00:00",
            "customer_id": "c-42",
            "terminal_id": "t-7",
            "merchant_id": "m-7",
            "amount": 57.16,
            "currency": "EUR",
            "channel": "ecommerce",
            "card_id": "card-1",
            "mcc": "5411",
            "ip": "10.1.2.3",
            "device_id": "dev-9",
            "email": "a@example.com",
        }
    )
)


class PydanticTransaction(pydantic.BaseModel):
    """The same fields and constraints as `fraudstream.schema.Transaction`."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    transaction_id: Annotated[str, pydantic.Field(min_length=1, max_length=128)]
    timestamp: pydantic.AwareDatetime
    customer_id: Annotated[str, pydantic.Field(min_length=1, max_length=128)]
    terminal_id: Annotated[str, pydantic.Field(min_length=1, max_length=128)]
    merchant_id: Annotated[str, pydantic.Field(min_length=1, max_length=128)]
    amount: Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)]
    currency: Annotated[str, pydantic.Field(pattern="^[A-Z]{3}$")]
    channel: Literal["card_present", "ecommerce"]
    card_id: str | None = None
    mcc: Annotated[str, pydantic.Field(pattern="^[0-9]{4}$")] | None = None
    product_category: str | None = None
    product_subcategory: str | None = None
    ip: str | None = None
    device_id: str | None = None
    email: str | None = None
    lat: float | None = None
    lon: float | None = None
    x: float | None = None
    y: float | None = None


def _per_call_us(fn: object, number: int = 20_000, repeat: int = 7) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    assert isinstance(decode_transaction(PAYLOAD), Transaction)
    assert isinstance(PydanticTransaction.model_validate_json(PAYLOAD).timestamp, datetime)
    ours = _per_call_us(lambda: decode_transaction(PAYLOAD))
    theirs = _per_call_us(lambda: PydanticTransaction.model_validate_json(PAYLOAD))
    result = {
        "msgspec_us": round(ours, 3),
        "pydantic_us": round(theirs, 3),
        "pydantic_over_msgspec": round(theirs / ours, 2),
        "payload_bytes": len(PAYLOAD),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"decode+validate one transaction ({len(PAYLOAD)} bytes of JSON), median of 7:")
    print(f"  msgspec   {ours:7.2f} µs")
    print(f"  pydantic  {theirs:7.2f} µs  ({theirs / ours:.1f}x slower)")


if __name__ == "__main__":
    main()
