"""Slots computed in one pass are Valkey's (redis-py's ``key_slot``)."""

from __future__ import annotations

from redis.crc import key_slot

from fraudstream.features.slots import key_slots

KEYS = [
    "",
    "a",
    "fs:{c:42}:cust",
    "fs:{t:T1}:td:19",
    "{}",
    "{}x{y}",
    "x{}{y}",
    "a{b",
    "a}b{c}",
    "{{a}}",
    "é{ü}",
    "ünicode",
    *(f"fs:{{k:card-{i}}}:kc:{i * 7}" for i in range(500)),
]


def test_slots_equal_key_slot() -> None:
    assert key_slots(KEYS).tolist() == [key_slot(k.encode()) for k in KEYS]


def test_bytes_keys_too() -> None:
    keys: list[str | bytes] = [b"fs:{c:1}:cust", "fs:{c:2}:cust"]
    assert key_slots(keys).tolist() == [key_slot(b"fs:{c:1}:cust"), key_slot(b"fs:{c:2}:cust")]
