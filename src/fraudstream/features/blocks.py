"""A batch's shared tile blocks, compiled: which it reads, and what it adds to each.

Per shared family and batch, `BatchRun._keys` needs the distinct (entity, block) pairs its
transactions' windows touch, and `Writer._family_writes` the batch's increments summed per
tile, grouped per block. Written with numpy (``np.unique``, ``np.bincount`` per counter,
``np.minimum.at``, ``np.r_``), each costs ~30 calls a family: ~0.2 ms of set-up for a batch
of one, times every shared family, twice. Here each is one loop over the batch. Integers
only, and the same order as ``np.unique`` (ascending), so the keys, the commands and their
bytes are the ones the numpy code built (``tests/features/test_feat_blocks.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

I64 = NDArray[np.int64]


@njit(cache=True)
def _unique_inverse(values):  # type: ignore[no-untyped-def]
    """``np.unique(values, return_inverse=True)`` of a 1-d int64 array."""
    order = np.argsort(values, kind="mergesort")
    inverse = np.empty(values.shape[0], dtype=np.int64)
    uniq = np.empty(values.shape[0], dtype=np.int64)
    m = -1
    for p in range(order.shape[0]):
        v = values[order[p]]
        if m < 0 or v != uniq[m]:
            m += 1
            uniq[m] = v
        inverse[order[p]] = m
    return uniq[: m + 1], inverse


@njit(cache=True)
def block_rows(code, ts, tile_us, span, slots, block_key):  # type: ignore[no-untyped-def]
    """The (entity code, block) pairs the windows of the batch touch, packed as
    ``code * block_key + block`` and sorted; and per transaction the rows of its window's
    first and last block in them (-1: no entity)."""
    n = code.shape[0]
    has = 0
    for i in range(n):
        if code[i] >= 0:
            has += 1
    combo = np.empty(2 * has, dtype=np.int64)
    p = 0
    for i in range(n):
        if code[i] >= 0:
            tile = ts[i] // tile_us
            combo[p] = code[i] * block_key + (tile - span + 1) // slots
            combo[p + 1] = code[i] * block_key + tile // slots
            p += 2
    uniq, inverse = _unique_inverse(combo)
    rows = np.full((n, 2), -1, dtype=np.int64)
    p = 0
    for i in range(n):
        if code[i] >= 0:
            rows[i, 0], rows[i, 1] = inverse[p], inverse[p + 1]
            p += 2
    return uniq, rows


@njit(cache=True)
def family_increments(own, ts, count, tile_us, slots, contrib, word, n_blocks):  # type: ignore[no-untyped-def]
    """A family's increments of the batch, per tile its transactions add to (those with a
    ``count``), tiles in (block row, slot) order.

    ``own``: each transaction's block row (its own tile's block); ``contrib`` (fields, n):
    what it adds to each field; ``word``: each field's bit offset in a block's first tile.
    Returns the blocks written (rows), ``ops`` (the fields of block ``j`` are
    ``ops[j]:ops[j + 1]``), each field's bit offset and value, and each written block's
    earliest transaction time."""
    n, nf = ts.shape[0], contrib.shape[0]
    used = 0
    for i in range(n):
        if count[i] > 0:
            used += 1
    combo = np.empty(used, dtype=np.int64)
    at = np.empty(used, dtype=np.int64)
    p = 0
    for i in range(n):
        if count[i] > 0:
            combo[p] = own[i] * slots + (ts[i] // tile_us) % slots
            at[p] = i
            p += 1
    cells, inverse = _unique_inverse(combo)
    m = cells.shape[0]
    value = np.zeros((m, nf), dtype=np.int64)
    for p in range(used):
        for f in range(nf):
            value[inverse[p], f] += contrib[f, at[p]]
    first_ts = np.full(n_blocks, np.iinfo(np.int64).max, dtype=np.int64)
    for p in range(used):
        r = own[at[p]]
        first_ts[r] = min(first_ts[r], ts[at[p]])
    offset = np.empty((m, nf), dtype=np.int64)
    starts = np.empty(m + 1, dtype=np.int64)
    rows = np.empty(m, dtype=np.int64)
    nb = 0
    for c in range(m):
        for f in range(nf):
            offset[c, f] = word[f] + (cells[c] % slots) * 64
        if c == 0 or cells[c] // slots != cells[c - 1] // slots:
            rows[nb] = cells[c] // slots
            starts[nb] = c * nf
            nb += 1
    starts[nb] = m * nf
    written = rows[:nb]
    return written, starts[: nb + 1], offset.ravel(), value.ravel(), first_ts[written]


@njit(cache=True)
def new_block_ttls(uniq, row, first_ts, absent, block_key, slots, span, tile_us, lateness_us, us):  # type: ignore[no-untyped-def]
    """`fraudstream.features.write.block_ttl` of each written block read as ``absent``
    (0 for the others: they keep theirs), ``uniq[row]`` packing (entity, block) as
    `block_rows` does; one loop instead of ten numpy calls a family. Integers only, with
    Python's floor division and remainder, as numpy's."""
    out = np.zeros(row.shape[0], dtype=np.int64)
    for j in range(row.shape[0]):
        if absent[j]:
            block = uniq[row[j]] % block_key
            end_us = ((block + 1) * slots + span) * tile_us + lateness_us
            out[j] = max(1, (end_us - first_ts[j]) // us + 1)
    return out
