"""A batch's valid transactions into their customers' tile rings, compiled.

`Writer._update_blobs` moves each owned family's ring forward (a slot whose tile is
replaced by a newer one starts empty) and combines each transaction into its tile. With
numpy that is ~6 calls per counter (``ufunc.at``, masks, a copy): for a batch of one,
~0.1 ms per family of set-up around a handful of integer operations. Here it is one loop
per family and one per counter, the same operations in the same order (the rings are
views of the customers' blobs: changed in place).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fraudstream.features.windows import ADD, MAX, MIN


@njit(cache=True)
def advance(tiles, rows, tile, slots):  # type: ignore[no-untyped-def]
    """Each transaction's tile into its slot of its row's ring (the newest tile wins a
    slot): which slots moved to a newer tile, and which transactions' tile their slot
    now holds (those add to it; an older one is past the ring)."""
    moved = np.zeros(tiles.shape, dtype=np.bool_)
    for p in range(rows.shape[0]):
        r, s = rows[p], tile[p] % slots
        if tile[p] > tiles[r, s]:
            tiles[r, s] = tile[p]
            moved[r, s] = True
    current = np.empty(rows.shape[0], dtype=np.bool_)
    for p in range(rows.shape[0]):
        current[p] = tiles[rows[p], tile[p] % slots] == tile[p]
    return moved, current


@njit(cache=True)
def combine_into(arr, moved, rows, slot, current, values, op, empty, cap):  # type: ignore[no-untyped-def]
    """One counter: the moved slots emptied, each current transaction's value combined
    into its slot (`fraudstream.features.windows` ops: add, min, max, or), then every
    value capped at ``cap`` (-1: no cap)."""
    for r in range(arr.shape[0]):
        for s in range(arr.shape[1]):
            if moved[r, s]:
                arr[r, s] = empty
    for p in range(rows.shape[0]):
        if not current[p]:
            continue
        r, s, v = rows[p], slot[p], values[p]
        if op == ADD:
            arr[r, s] += v
        elif op == MIN:
            arr[r, s] = min(arr[r, s], v)
        elif op == MAX:
            arr[r, s] = max(arr[r, s], v)
        else:
            arr[r, s] |= v
    if cap >= 0:
        for r in range(arr.shape[0]):
            for s in range(arr.shape[1]):
                arr[r, s] = min(arr[r, s], cap)
