"""The compiled ring update (`fraudstream.features.rings`) = the numpy it replaced: the
customers' blobs come out byte for byte the same (rings moved on, counters combined and
capped), on blobs holding older and newer tiles than the batch's, saturated sums included."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features.definitions import default_feature_set
from fraudstream.features.layout import (
    SUM_CAPS,
    US,
    combine,
    compile_plan,
    empty_blobs,
    empty_value,
)
from fraudstream.features.rings import advance, combine_into
from fraudstream.features.windows import op_of

PLAN = compile_plan(default_feature_set())


def numpy_update(
    blobs: np.ndarray, rows: np.ndarray, ts: np.ndarray, added: dict[int, dict[str, np.ndarray]]
) -> None:
    for fam in PLAN.owned:
        tile = (ts // fam.tile_us).astype(np.int64)
        slot = tile % fam.slots
        tiles = blobs[f"r{fam.index}_tile"]
        before = tiles.copy()
        np.maximum.at(tiles, (rows, slot), tile)
        moved = tiles != before
        current = tiles[rows, slot] == tile
        for c in fam.counters:
            arr = blobs[f"r{fam.index}_{c}"]
            arr[moved] = empty_value(c)
            at = (rows[current], slot[current])
            combine(c).at(arr, at, added[fam.index][c][current].astype(arr.dtype))
            if c in SUM_CAPS:
                np.minimum(arr, SUM_CAPS[c], out=arr)


def compiled_update(
    blobs: np.ndarray, rows: np.ndarray, ts: np.ndarray, added: dict[int, dict[str, np.ndarray]]
) -> None:
    for fam in PLAN.owned:
        tile = (ts // fam.tile_us).astype(np.int64)
        moved, current = advance(blobs[f"r{fam.index}_tile"], rows, tile, fam.slots)
        for c in fam.counters:
            arr = blobs[f"r{fam.index}_{c}"]
            values = added[fam.index][c]
            cap = SUM_CAPS.get(c, -1)
            slot = tile % fam.slots
            combine_into(arr, moved, rows, slot, current, values, op_of(c), empty_value(c), cap)


@pytest.mark.parametrize("customers,n", [(1, 1), (2, 3), (40, 300)])
@pytest.mark.parametrize("seed", range(3))
def test_compiled_ring_update_equals_numpy(customers: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    now = 1_700_000_000 * US
    blobs = empty_blobs(PLAN, customers)
    for fam in PLAN.owned:  # rings holding tiles a little older and newer than the batch's
        here = now // fam.tile_us
        held = rng.random((customers, fam.slots)) < 0.6
        tiles = here + rng.integers(-2 * fam.slots, 3, (customers, fam.slots))
        blobs[f"r{fam.index}_tile"] = np.where(held, tiles, -1)
        for c in fam.counters:
            top = SUM_CAPS.get(c, 1000)
            blobs[f"r{fam.index}_{c}"] = rng.integers(0, top, (customers, fam.slots))
    rows = rng.integers(0, customers, n)
    ts = now + rng.integers(-3 * 86400, 3600, n) * US
    added = {
        fam.index: {
            c: rng.integers(0, SUM_CAPS.get(c, 2), n).astype(np.int64) for c in fam.counters
        }
        for fam in PLAN.owned
    }
    want, got = blobs.copy(), blobs.copy()
    numpy_update(want, rows, ts, added)
    compiled_update(got, rows, ts, added)
    assert want.tobytes() == got.tobytes()
    assert want.tobytes() != blobs.tobytes()
