"""First-seen sets: exact while small, then two generations of Bloom filters (`FirstSeen`).

Both paths call `replay`, so the online engine and the backfill produce the same answers,
Bloom false positives included: the state is a pure function of the customer's values in
processing order. Each value is reduced to a 64-bit hash (`value_hashes`, BLAKE2b); a
generation stores those hashes verbatim while it holds at most ``words`` of them (an exact
set), and the Bloom bit positions are derived from the same hash (double hashing), so the
exact set can be turned into a filter without the original values.

>>> from fraudstream.features.definitions import FirstSeen
>>> spec = FirstSeen("device", words=1, fp_rate=0.2)
>>> state = SeenState.empty(spec, 1)
>>> h = value_hashes(["a", "b", "a", "c", "d", "a"])
>>> replay(spec, state, np.zeros(6, np.int64), h, np.ones(6, bool)).tolist()
[True, True, False, True, True, False]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fraudstream.features.definitions import FirstSeen

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]


def value_hashes(values: Sequence[str]) -> U64:
    """64-bit BLAKE2b of each value (UTF-8): stable across processes and versions."""
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(v.encode(), digest_size=8).digest(), "little")
            for v in values
        ],
        dtype=np.uint64,
    )


class HashCache:
    """`value_hashes` with memory: merchants, categories, devices and IPs recur, so most
    lookups are one dict probe (~0.1 µs) instead of a BLAKE2b (~1 µs). Cleared when full."""

    def __init__(self, size: int = 1 << 18) -> None:
        self.size = size
        self._known: dict[str, int] = {}

    def lookup(self, values: Sequence[str]) -> U64:
        known = self._known
        missing = [v for v in values if v not in known]
        if missing:
            if len(known) + len(missing) > self.size:
                known.clear()
            known.update(zip(missing, value_hashes(missing).tolist(), strict=True))
        return np.array([known[v] for v in values], dtype=np.uint64)


@dataclass
class SeenState:
    """Per customer (row): the current generation, the previous one, and how many values the
    current one holds (``count <= words``: exact hashes in its first ``count`` words)."""

    cur: U64
    prev: U64
    count: I64

    @classmethod
    def empty(cls, spec: FirstSeen, rows: int) -> SeenState:
        zeros = np.zeros((rows, spec.words), dtype=np.uint64)
        return cls(zeros, zeros.copy(), np.zeros(rows, dtype=np.int64))


def positions(spec: FirstSeen, h: U64) -> tuple[I64, U64]:
    """(word, bit mask) of each hash's ``spec.hashes`` Bloom bits, shape (len(h), hashes)."""
    word: I64
    mask: U64
    word, mask = _positions(np.ascontiguousarray(h, dtype=np.uint64), spec.hashes, spec.bits)
    return word, mask


@njit(cache=True)
def _positions(h, hashes, bits):  # type: ignore[no-untyped-def]
    """`positions` in one loop (numpy: ten calls on (n, hashes) arrays, ~13 µs for one
    value). Enhanced double hashing, ``h1 + i * h2 + (i³ - i) / 6``: the cubic term breaks
    the ``h1 + i * h2`` line patterns; in int64, far from overflow (h1, h2 < 2**32)."""
    n = h.shape[0]
    word = np.empty((n, hashes), dtype=np.int64)
    mask = np.empty((n, hashes), dtype=np.uint64)
    for r in range(n):
        h1 = np.int64(h[r] & np.uint64(0xFFFFFFFF))
        h2 = np.int64((h[r] >> np.uint64(32)) | np.uint64(1))
        for i in range(hashes):
            pos = (h1 + i * h2 + (i * i * i - i) // 6) & (bits - 1)
            word[r, i] = pos >> 6
            mask[r, i] = np.uint64(1) << np.uint64(pos & 63)
    return word, mask


def replay(spec: FirstSeen, state: SeenState, group: I64, h: U64, insert: Bools) -> Bools:
    """First-seen flags of values in processing order; ``group`` indexes ``state`` rows
    (updated in place where ``insert``). One compiled pass in order (`_replay`); the Bloom
    bits of every value are laid out first with numpy (`positions`)."""
    first = np.zeros(len(group), dtype=bool)
    if not len(group):
        return first
    word, mask = positions(spec, h)
    _replay(
        state.cur,
        state.prev,
        state.count,
        group,
        h,
        insert,
        word,
        mask,
        spec.words,
        spec.capacity,
        first,
    )
    return first


@njit(cache=True)
def _in_filter(gen, r, word, mask, i):  # type: ignore[no-untyped-def]
    for j in range(word.shape[1]):
        if gen[r, word[i, j]] & mask[i, j] == 0:
            return False
    return True


@njit(cache=True)
def _add_bits(gen, r, word, mask, i):  # type: ignore[no-untyped-def]
    for j in range(word.shape[1]):
        gen[r, word[i, j]] |= mask[i, j]


@njit(cache=True)
def _replay(cur, prev, count, group, h, insert, word, mask, words, capacity, first):  # type: ignore[no-untyped-def]
    """Per value: was it in the customer's current generation (exact while it holds at most
    ``words`` values, then a Bloom filter) or the previous one (always a filter)? Then add
    it to the current one where ``insert`` (turning the exact set into a filter when it
    overflows) and rotate the generations at ``capacity`` values."""
    for i in range(group.shape[0]):
        r = group[i]
        n = count[r]
        if n <= words:
            in_cur = False
            for j in range(n):
                if cur[r, j] == h[i]:
                    in_cur = True
                    break
        else:
            in_cur = _in_filter(cur, r, word, mask, i)
        seen = in_cur or _in_filter(prev, r, word, mask, i)
        first[i] = not seen
        if not insert[i] or in_cur:
            continue
        if n < words:
            cur[r, n] = h[i]
        elif n == words:
            old = cur[r].copy()
            cur[r] = 0
            for j in range(words):
                h1 = np.int64(old[j] & np.uint64(0xFFFFFFFF))
                h2 = np.int64((old[j] >> np.uint64(32)) | np.uint64(1))
                for k in range(word.shape[1]):
                    pos = (h1 + k * h2 + (k * k * k - k) // 6) & (64 * words - 1)
                    cur[r, pos >> 6] |= np.uint64(1) << np.uint64(pos & 63)
            _add_bits(cur, r, word, mask, i)
        else:
            _add_bits(cur, r, word, mask, i)
        count[r] = n + 1
        if n + 1 >= capacity:
            prev[r] = cur[r]
            cur[r] = 0
            count[r] = 0
