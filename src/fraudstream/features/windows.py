"""A batch's window sums, compiled: the online engine's innermost loops, in numba.

For one tiled family and every transaction of a batch, the value of each counter over each
aggregate's window, as the transaction sees it: the stored tiles, plus the earlier valid
transactions of the batch with the same entity, plus itself. The same arithmetic written
with numpy costs ~9 µs a transaction in array set-up (``(n, span)`` grids per counter); as
loops over a few hundred transactions it is a fraction of that. Integers only, so the
result is exact and the offline backfill (`fraudstream.features.offline`, polars/numpy)
must and does agree with it bit for bit (the parity tests).

Counters combine with `OPS` (add; min; max; bitwise or): the same identities as
`fraudstream.features.layout.combine`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import NDArray

from fraudstream.features.layout import Family, cap_of, empty_value

I64 = NDArray[np.int64]
ADD, MIN, MAX, OR = 0, 1, 2, 3
OPS = {"lo": MIN, "hi": MAX}
"""Counter -> how its values combine (``d_…`` sketches: `OR`; everything else: `ADD`)."""


def op_of(counter: str) -> int:
    return OR if counter.startswith("d_") else OPS.get(counter, ADD)


@dataclass(frozen=True)
class WindowSpec:
    """A family's constant arguments of `window_sums`, built once per engine."""

    empty: I64
    ops: I64
    caps: I64
    in_batch: NDArray[np.bool_]
    """Counters the batch's own transactions add to (labels are never in the batch)."""
    lags: I64
    lengths: I64

    @classmethod
    def of(cls, fam: Family) -> WindowSpec:
        counters = fam.counters
        return cls(
            empty=np.array([empty_value(c) for c in counters], dtype=np.int64),
            ops=np.array([op_of(c) for c in counters], dtype=np.int64),
            caps=np.array([cap_of(c) for c in counters], dtype=np.int64),
            in_batch=np.array([c != "f" for c in counters]),
            lags=np.array([a.lag for a in fam.aggregates], dtype=np.int64),
            lengths=np.array([a.tiles for a in fam.aggregates], dtype=np.int64),
        )


def previous_same(code: I64) -> I64:
    """Per transaction, the latest earlier one of the batch with the same entity (-1: none,
    or no entity)."""
    if len(code) < 2:  # a batch of one: nothing earlier (an argsort costs more)
        return np.full(len(code), -1, dtype=np.int64)
    order = np.argsort(code, kind="stable")
    sc = code[order]
    prev = np.full(len(code), -1, dtype=np.int64)
    same = (sc[1:] == sc[:-1]) & (sc[1:] >= 0)
    prev[order[1:][same]] = order[:-1][same]
    return prev


@njit(cache=True)
def _combine(op: int, a: np.int64, b: np.int64, cap: np.int64) -> np.int64:
    if op == ADD:  # saturating: both at most the cap (< 2**62), so the sum cannot overflow
        return min(a + b, cap)
    if op == MIN:
        return min(a, b)
    if op == MAX:
        return max(a, b)
    return a | b


@njit(cache=True)
def owned_grid(ring_tile, ring, rows, tile, span, empty):  # type: ignore[no-untyped-def]
    """Stored values of the ``span`` tiles ending with each transaction's own, from a ring
    of ``slots`` tiles per entity row (``ring_tile`` says which tile a slot holds)."""
    k, n, slots = ring.shape[0], tile.shape[0], ring_tile.shape[1]
    out = np.empty((k, n, span), dtype=np.int64)
    for i in range(n):
        r = rows[i]
        for o in range(span):
            t = tile[i] - span + 1 + o
            s = t % slots
            held = ring_tile[r, s] == t
            for c in range(k):
                out[c, i, o] = ring[c, r, s] if held else empty[c]
    return out


@njit(cache=True)
def shared_grid(blocks, idx, tile, span, slots):  # type: ignore[no-untyped-def]
    """Stored values of the ``span`` tiles ending with each transaction's own, from the
    blocks read for the batch: ``idx[i]`` = rows of the window's first and last block
    (-1: absent, read as the zero row at the end)."""
    k, missing, n = blocks.shape[0], blocks.shape[1] - 1, tile.shape[0]
    out = np.empty((k, n, span), dtype=np.int64)
    for i in range(n):
        first = (tile[i] - span + 1) // slots
        for o in range(span):
            t = tile[i] - span + 1 + o
            row = idx[i, 0] if t // slots == first else idx[i, 1]
            if row < 0:
                row = missing
            for c in range(k):
                out[c, i, o] = blocks[c, row, t % slots]
    return out


@njit(cache=True)
def window_sums(grid, tile, prev, contrib, ops, caps, in_batch, lags, lengths):  # type: ignore[no-untyped-def]
    """Each aggregate's window value per counter and transaction, shape (aggregates, k, n).
    Sums saturate at their counter's cap (`fraudstream.features.layout.cap_of`).

    ``grid`` (k, n, span) holds the stored tiles and is completed in place: each valid
    earlier transaction of the same entity (``prev`` chain; ``contrib`` is zero / the
    identity for invalid ones) and the transaction itself, for counters with ``in_batch``.
    The window of aggregate ``a`` is the ``lengths[a]`` tiles ending ``lags[a]`` tiles
    before the transaction's own."""
    k, n, span = grid.shape
    for i in range(n):
        base = tile[i] - span + 1
        j = prev[i]
        while j >= 0:
            o = tile[j] - base
            if 0 <= o < span:
                for c in range(k):
                    if in_batch[c]:
                        grid[c, i, o] = _combine(ops[c], grid[c, i, o], contrib[c, j], caps[c])
            j = prev[j]
        for c in range(k):
            if in_batch[c]:
                grid[c, i, span - 1] = _combine(
                    ops[c], grid[c, i, span - 1], contrib[c, i], caps[c]
                )
    out = np.empty((lags.shape[0], k, n), dtype=np.int64)
    for a in range(lags.shape[0]):
        hi = span - lags[a]
        lo = hi - lengths[a]
        for c in range(k):
            for i in range(n):
                acc = grid[c, i, lo]
                for o in range(lo + 1, hi):
                    acc = _combine(ops[c], acc, grid[c, i, o], caps[c])
                out[a, c, i] = acc
    return out
