"""The cluster hash slots of a batch's keys, in one compiled pass.

Routing a batch per node needs each command's slot: redis-py's ``key_slot`` costs ~2.5 µs
of Python a key, ~12 ms for a batch's ~5,000 commands. Here the keys are encoded once
(`fraudstream.features.resp.encode_keys`) and hashed as Valkey hashes them: CRC16-CCITT
(XMODEM) of the hash tag (between the first ``{`` and the next ``}``, when not empty) or
of the whole key, modulo 16384 (a test compares with ``key_slot``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit
from numpy.typing import NDArray
from redis.crc import key_slot

from fraudstream.features.resp import encode_keys

SLOTS = 16384
U8 = NDArray[np.uint8]
I64 = NDArray[np.int64]


def _crc_table() -> NDArray[np.uint16]:
    table = np.zeros(256, dtype=np.uint16)
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table[byte] = crc
    return table


_TABLE = _crc_table()


def key_slots(keys: Sequence[str | bytes]) -> I64:
    """The slot of each key."""
    if not all(isinstance(k, str) for k in keys):  # keys from SCAN come as bytes
        return np.array([key_slot(k if isinstance(k, bytes) else k.encode()) for k in keys])
    blob, starts = encode_keys(list(keys))  # type: ignore[arg-type]
    return _slots(blob, starts, _TABLE)


@njit(cache=True)
def _slots(blob: U8, starts: I64, table: NDArray[np.uint16]) -> I64:
    out = np.empty(len(starts) - 1, dtype=np.int64)
    for k in range(len(out)):
        lo, hi = starts[k], starts[k + 1]
        for i in range(lo, hi):  # the hash tag, if any
            if blob[i] == 123:  # "{"
                for j in range(i + 1, hi):
                    if blob[j] == 125:  # "}"
                        if j > i + 1:
                            lo, hi = i + 1, j
                        break
                break
        crc = 0
        for i in range(lo, hi):
            crc = ((crc << 8) & 0xFFFF) ^ table[((crc >> 8) ^ blob[i]) & 0xFF]
        out[k] = crc % SLOTS
    return out
