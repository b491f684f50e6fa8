"""A batch's commands encoded as Redis protocol (RESP) in compiled passes.

A batch sends ~1,200 ``BITFIELD … INCRBY`` commands (one per shared tile block it touches)
and ~400 ``SET`` (one per customer), and reads ~3,000 keys. As Python tuples packed one by
one (`hiredis.pack_command`) they cost ~12 µs of client CPU a transaction, more than any
feature; written straight from the arrays they come from (the batch's keys encoded once,
`encode_keys`), ~2. The bytes are exactly what ``pack_command`` would produce for the same
commands (a test compares them).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]

_BITFIELD = np.frombuffer(b"$8\r\nBITFIELD\r\n", dtype=np.uint8)
_SATURATE = np.frombuffer(b"$8\r\nOVERFLOW\r\n$3\r\nSAT\r\n", dtype=np.uint8)
_INCRBY = np.frombuffer(b"$6\r\nINCRBY\r\n", dtype=np.uint8)
_EXPIRE = np.frombuffer(b"*3\r\n$6\r\nEXPIRE\r\n", dtype=np.uint8)
_SET = np.frombuffer(b"*5\r\n$3\r\nSET\r\n", dtype=np.uint8)
_EX = np.frombuffer(b"$2\r\nEX\r\n", dtype=np.uint8)
_OP_MAX = len(_INCRBY) + 9 + 2 * (1 + 2 + 2 + 20 + 2)
"""Bytes an operation can take: ``INCRBY``, the field's type (``$3\\r\\nu24\\r\\n``), then
offset and value (at most 20 digits with the sign, each as ``$<len>\\r\\n<digits>\\r\\n``)."""


def encode_keys(keys: list[str]) -> tuple[U8, I64]:
    """The keys' UTF-8 bytes back to back, and where each starts (one more at the end)."""
    joined = "".join(keys)
    data = joined.encode()
    if len(data) == len(joined):  # ASCII: characters are bytes
        lengths: list[int] = list(map(len, keys))
    else:
        encoded = [k.encode() for k in keys]
        lengths = list(map(len, encoded))
    starts = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return np.frombuffer(data, dtype=np.uint8), starts


def keys_command(name: bytes, blob: U8, starts: I64, lo: int, hi: int) -> bytes:
    """``<name> key[lo] … key[hi - 1]`` (``MGET``, ``WATCH``)."""
    head = b"*%d\r\n$%d\r\n%b\r\n" % (hi - lo + 1, len(name), name)
    size = int(starts[hi] - starts[lo]) + (hi - lo) * 25
    out = np.empty(size, dtype=np.uint8)
    used = _keys(out, blob, starts, lo, hi)
    return head + out[:used].tobytes()


def set_commands(blob: U8, starts: I64, key: I64, values: U8, ttl: int) -> U8:
    """``SET k <values[j]> EX <ttl>`` per ``k = key[j]`` (``values``: one row per key)."""
    size = 0
    if len(key):
        longest = int(np.max(starts[key + 1] - starts[key]))
        size = len(key) * (longest + values.shape[1] + 120)
    out = np.empty(size, dtype=np.uint8)
    used = _sets(out, blob, starts, key, values, ttl, _SET, _EX)
    return out[:used]


def field_type(field: int) -> str:
    """A ``BITFIELD`` type from its code: ``i<bits>`` (signed, > 0) or ``u<bits>`` (< 0)."""
    return f"i{field}" if field > 0 else f"u{-field}"


def bitfield_commands(
    blob: U8, starts: I64, key: I64, ops: I64, field: I64, offset: I64, value: I64, ttl: I64
) -> U8:
    """``BITFIELD k INCRBY <type> <offset> <value> …`` per ``k`` in ``key`` (key ``k`` is
    ``blob[starts[k]:starts[k + 1]]``, its operations ``ops[j]:ops[j + 1]``, their types
    coded as `field_type` reads them; ``OVERFLOW SAT`` first where one is narrower than
    ``i64``), each followed by ``EXPIRE k <ttl>`` where ``ttl[j] > 0``."""
    size = 0
    if len(key):
        longest = int(np.max(starts[key + 1] - starts[key]))
        size = len(key) * (2 * (longest + 30) + 90) + (int(ops[-1]) - int(ops[0])) * _OP_MAX
    out = np.empty(size, dtype=np.uint8)
    heads = (_BITFIELD, _SATURATE, _INCRBY, _EXPIRE)
    used = _bitfields(out, blob, starts, key, ops, field, offset, value, ttl, *heads)
    return out[:used]


@njit(cache=True)
def _put(out: U8, at: int, src: U8) -> int:
    out[at : at + len(src)] = src
    return at + len(src)


@njit(cache=True)
def _put_int(out: U8, at: int, v: int) -> int:
    """Decimal digits of ``v`` (with its sign)."""
    if v < 0:
        out[at] = 45  # "-"
        at += 1
        v = -v
    digits = 1
    rest = v // 10
    while rest:
        digits += 1
        rest //= 10
    for i in range(digits - 1, -1, -1):
        out[at + i] = 48 + v % 10
        v //= 10
    return at + digits


@njit(cache=True)
def _put_len(out: U8, at: int, mark: int, n: int) -> int:
    """``<mark><n>\\r\\n``: an array (``*``) or a bulk string (``$``) header."""
    out[at] = mark
    at = _put_int(out, at + 1, n)
    out[at] = 13
    out[at + 1] = 10
    return at + 2


@njit(cache=True)
def _int_width(v: int) -> int:
    width = 1 if v >= 0 else 2
    v = abs(v) // 10
    while v:
        width += 1
        v //= 10
    return width


@njit(cache=True)
def _put_bulk_int(out: U8, at: int, v: int) -> int:
    at = _put_len(out, at, 36, _int_width(v))
    at = _put_int(out, at, v)
    out[at] = 13
    out[at + 1] = 10
    return at + 2


@njit(cache=True)
def _put_key(out: U8, at: int, blob: U8, lo: int, hi: int) -> int:
    at = _put_len(out, at, 36, hi - lo)
    for i in range(lo, hi):
        out[at] = blob[i]
        at += 1
    out[at] = 13
    out[at + 1] = 10
    return at + 2


@njit(cache=True)
def _keys(out: U8, blob: U8, starts: I64, lo: int, hi: int) -> int:
    at = 0
    for k in range(lo, hi):
        at = _put_key(out, at, blob, starts[k], starts[k + 1])
    return at


@njit(cache=True)
def _sets(out: U8, blob: U8, starts: I64, key: I64, values: U8, ttl: int, set_: U8, ex: U8) -> int:
    at = 0
    for j in range(len(key)):
        at = _put(out, at, set_)
        at = _put_key(out, at, blob, starts[key[j]], starts[key[j] + 1])
        at = _put_len(out, at, 36, values.shape[1])
        at = _put(out, at, values[j])
        out[at] = 13
        out[at + 1] = 10
        at = _put(out, at + 2, ex)
        at = _put_bulk_int(out, at, ttl)
    return at


@njit(cache=True)
def _put_type(out: U8, at: int, field: int) -> int:
    """The bulk string ``i<bits>`` / ``u<bits>`` of a field code (see `field_type`)."""
    bits = abs(field)
    at = _put_len(out, at, 36, 1 + _int_width(bits))
    out[at] = 105 if field > 0 else 117  # "i" / "u"
    at = _put_int(out, at + 1, bits)
    out[at] = 13
    out[at + 1] = 10
    return at + 2


@njit(cache=True)
def _bitfields(
    out: U8,
    blob: U8,
    starts: I64,
    key: I64,
    ops: I64,
    field: I64,
    offset: I64,
    value: I64,
    ttl: I64,
    bitfield: U8,
    saturate: U8,
    incrby: U8,
    expire: U8,
) -> int:
    at = 0
    for j in range(len(key)):
        lo, hi = starts[key[j]], starts[key[j] + 1]
        narrow = False
        for p in range(ops[j], ops[j + 1]):
            narrow |= field[p] != 64
        at = _put_len(out, at, 42, 2 + 2 * narrow + 4 * (ops[j + 1] - ops[j]))
        at = _put(out, at, bitfield)
        at = _put_key(out, at, blob, lo, hi)
        if narrow:
            at = _put(out, at, saturate)
        for p in range(ops[j], ops[j + 1]):
            at = _put(out, at, incrby)
            at = _put_type(out, at, field[p])
            at = _put_bulk_int(out, at, offset[p])
            at = _put_bulk_int(out, at, value[p])
        if ttl[j] > 0:
            at = _put(out, at, expire)
            at = _put_key(out, at, blob, lo, hi)
            at = _put_bulk_int(out, at, ttl[j])
    return at
