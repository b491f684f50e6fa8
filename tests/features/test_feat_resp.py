"""The compiled protocol encoder writes what hiredis would for the same commands."""

from __future__ import annotations

from typing import Any

import hiredis
import numpy as np

from fraudstream.features.resp import encode_keys, keys_command, set_commands
from fraudstream.features.write import BlockWrites


def pack(command: tuple[Any, ...]) -> bytes:
    packed: bytes = hiredis.pack_command(command)
    return packed


def test_packed_block_writes_are_the_bytes_of_their_commands() -> None:
    rng = np.random.default_rng(7)
    keys = [f"fs:{{t:T{i}}}:1d:{i * 37}" for i in range(40)] + ["fs:{k:carte-é}:3600s:0"]
    per_key = rng.integers(1, 4, size=12)
    n = int(per_key.sum())
    writes = BlockWrites(
        key=rng.choice(len(keys), size=12, replace=False).astype(np.int64),
        ops=np.r_[0, np.cumsum(per_key)].astype(np.int64),
        field=rng.choice([64, 40, -24, -32, -63], size=n),
        offset=rng.integers(0, 1 << 16, size=n) * 64,
        value=np.r_[0, -1, -(1 << 62), (1 << 62) + 12345, rng.integers(-(10**12), 10**12, n - 4)],
        ttl=np.where(rng.random(12) < 0.5, rng.integers(1, 10**7, 12), 0),
    )
    writes.key[0] = len(keys) - 1  # a key with a multi-byte character
    commands = writes.commands(keys)
    packed = writes.packed(*encode_keys(keys))
    assert bytes(packed.data) == b"".join(pack(c) for c in commands)
    assert packed.commands == len(commands) == 12 + int(np.count_nonzero(writes.ttl))
    reader = hiredis.Reader()
    reader.feed(bytes(packed.data))
    first = reader.gets()
    assert first[:5] == [b"BITFIELD", keys[writes.key[0]].encode(), b"OVERFLOW", b"SAT", b"INCRBY"]


def test_no_block_writes_pack_to_nothing() -> None:
    none = np.zeros(0, dtype=np.int64)
    writes = BlockWrites(none, np.zeros(1, dtype=np.int64), none, none, none, none)
    assert bytes(writes.packed(*encode_keys([])).data) == b"" and writes.commands([]) == []


def test_a_keys_command_is_the_bytes_hiredis_packs() -> None:
    keys = ["fs:{c:1}", "fs:{c:é}", "fs:{t:T9}:1d:3", "x"]
    blob, starts = encode_keys(keys)
    assert keys_command(b"MGET", blob, starts, 0, 4) == pack(("MGET", *keys))
    assert keys_command(b"WATCH", blob, starts, 1, 3) == pack(("WATCH", *keys[1:3]))


def test_set_commands_are_the_bytes_hiredis_packs() -> None:
    keys = ["fs:{c:1}", "fs:{c:é}", "fs:{c:3}"]
    values = np.arange(3 * 7, dtype=np.uint8).reshape(3, 7)
    blob, starts = encode_keys(keys)
    which = np.array([2, 0], dtype=np.int64)
    expected = b"".join(
        pack(("SET", keys[k], values[j].tobytes(), "EX", 7776000))
        for j, k in enumerate(which.tolist())
    )
    assert bytes(set_commands(blob, starts, which, values[:2], 7776000)) == expected
