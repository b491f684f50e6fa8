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
from numpy.typing import NDArray

from fraudstream.features.definitions import FirstSeen

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
Bools = NDArray[np.bool_]
_LOW = np.uint64(0xFFFFFFFF)


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
    h1 = (h & _LOW).astype(np.int64)
    h2 = ((h >> np.uint64(32)) | np.uint64(1)).astype(np.int64)
    i = np.arange(spec.hashes, dtype=np.int64)
    cubic = (i**3 - i) // 6  # enhanced double hashing: breaks the h1 + i*h2 line patterns
    pos = (h1[:, None] + i[None, :] * h2[:, None] + cubic[None, :]) & (spec.bits - 1)
    return pos >> 6, np.left_shift(np.uint64(1), (pos & 63).astype(np.uint64))


def _in_filter(gen: U64, word: I64, mask: U64) -> Bools:
    rows = np.arange(len(gen))[:, None]
    hit: Bools = ((gen[rows, word] & mask) != 0).all(axis=1)
    return hit


def _step(
    spec: FirstSeen,
    cur: U64,
    prev: U64,
    count: I64,
    h: U64,
    insert: Bools,
    bloom: tuple[I64, U64],
) -> Bools:
    """One value per row (distinct customers): whether it was seen, then insert it (in place)
    into the current generation where ``insert`` and it is not there yet. ``bloom`` holds the
    values' `positions`."""
    words = spec.words
    word, mask = bloom
    exact = count <= words
    listed = ((cur == h[:, None]) & (np.arange(words)[None, :] < count[:, None])).any(axis=1)
    in_cur = np.where(exact, listed, _in_filter(cur, word, mask))
    seen = in_cur | _in_filter(prev, word, mask)
    add = insert & ~in_cur
    append = np.flatnonzero(add & (count < words))
    cur[append, count[append]] = h[append]
    convert = np.flatnonzero(add & (count == words))
    if len(convert):
        old = cur[convert]
        cur[convert] = 0
        both = np.concatenate([old, h[convert, None]], axis=1)
        w, m = positions(spec, both.ravel())
        rows = np.repeat(convert, (words + 1) * spec.hashes)
        np.bitwise_or.at(cur, (rows, w.ravel()), m.ravel())
    dense = np.flatnonzero(add & (count > words))
    if len(dense):
        rows = np.repeat(dense, spec.hashes)
        np.bitwise_or.at(cur, (rows, word[dense].ravel()), mask[dense].ravel())
    count[add] += 1
    full = np.flatnonzero(count >= spec.capacity)
    if len(full):
        prev[full] = cur[full]
        cur[full] = 0
        count[full] = 0
    result: Bools = seen
    return result


def ranks(group: I64) -> I64:
    """Per element, how many earlier elements share its group."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    start = np.searchsorted(sorted_group, sorted_group, side="left")
    out = np.empty(len(group), dtype=np.int64)
    out[order] = np.arange(len(group)) - start
    return out


def replay(spec: FirstSeen, state: SeenState, group: I64, h: U64, insert: Bools) -> Bools:
    """First-seen flags of values in processing order; ``group`` indexes ``state`` rows
    (updated in place where ``insert``). Vectorised over groups: step ``r`` handles each
    group's ``r``-th value, so the loop runs as many times as the busiest group has values.
    """
    first = np.zeros(len(group), dtype=bool)
    if not len(group):
        return first
    rank = ranks(group)
    order = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max()) + 2))
    word, mask = positions(spec, h)
    for r in range(len(bounds) - 1):
        idx = order[bounds[r] : bounds[r + 1]]
        rows = group[idx]
        cur, prev, count = state.cur[rows], state.prev[rows], state.count[rows]
        seen = _step(spec, cur, prev, count, h[idx], insert[idx], (word[idx], mask[idx]))
        state.cur[rows], state.prev[rows], state.count[rows] = cur, prev, count
        first[idx] = ~seen
    return first
