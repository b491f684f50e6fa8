"""The compiled block bookkeeping (`fraudstream.features.blocks`) = the numpy it replaced:
the same blocks in the same order, the same increments, offsets and times, so the keys
and commands of a batch are byte for byte the ones they were."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.features import default_feature_set
from fraudstream.features.blocks import block_rows, family_increments, new_block_ttls
from fraudstream.features.layout import US, compile_plan
from fraudstream.features.write import BLOCK_KEY, block_ttl

TILE_US = 3600 * US


def numpy_block_rows(
    code: np.ndarray, ts: np.ndarray, span: int, slots: int
) -> tuple[np.ndarray, np.ndarray]:
    tile = ts // TILE_US
    blocks = np.stack([(tile - span + 1) // slots, tile // slots], axis=1)
    has = code >= 0
    combo = code[has, None] * BLOCK_KEY + blocks[has]
    uniq, inverse = np.unique(combo, return_inverse=True)
    rows = np.full((len(code), 2), -1, dtype=np.int64)
    rows[has] = inverse.reshape(-1, 2)
    return uniq, rows


def numpy_increments(
    own: np.ndarray, ts: np.ndarray, count: np.ndarray, slots: int, added: np.ndarray,
    word: np.ndarray, n_blocks: int,
) -> tuple[np.ndarray, ...]:  # fmt: skip
    use = np.flatnonzero(count > 0)
    combo = own[use] * slots + (ts[use] // TILE_US) % slots
    cells, inverse = np.unique(combo, return_inverse=True)
    value = np.stack(
        [np.bincount(inverse, weights=a[use], minlength=len(cells)) for a in added], axis=1
    ).astype(np.int64)
    offset = word[None, :] + (cells % slots)[:, None] * 64
    row_of = cells // slots
    first = np.flatnonzero(np.r_[True, row_of[1:] != row_of[:-1]])
    row = row_of[first]
    ops = np.r_[first, len(cells)] * len(word)
    first_ts = np.full(n_blocks, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_ts, own[use], ts[use])
    return row, ops, offset.ravel(), value.ravel(), first_ts[row]


@pytest.mark.parametrize("n", [0, 1, 3, 40, 500])
@pytest.mark.parametrize("seed", range(4))
def test_compiled_blocks_equal_numpy(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    span, slots = int(rng.integers(1, 40)), 64
    code = np.where(rng.random(n) < 0.15, -1, rng.integers(0, 1 + n // 3, n)).astype(np.int64)
    ts = 1_700_000_000 * US + rng.integers(-400, 400, n) * TILE_US + rng.integers(0, TILE_US, n)
    uniq, rows = block_rows(code, ts, TILE_US, span, slots, BLOCK_KEY)
    want_uniq, want_rows = numpy_block_rows(code, ts, span, slots)
    assert np.array_equal(uniq, want_uniq) and np.array_equal(rows, want_rows)

    count = ((code >= 0) & (rng.random(n) < 0.8)).astype(np.int64)
    if not count.any():  # the write skips such a family
        return
    cents = rng.integers(0, 10**11, n) * (rng.random(n) > 0.2)
    added = np.array([count, count * cents], dtype=np.int64)
    word = np.array([0, 40], dtype=np.int64)
    own = np.ascontiguousarray(rows[:, 1])
    got = family_increments(own, ts, count, TILE_US, slots, added, word, len(uniq))
    want = numpy_increments(own, ts, count, slots, added, word, len(uniq))
    for name, g, w in zip(("rows", "ops", "offset", "value", "first_ts"), got, want, strict=True):
        assert np.array_equal(g, w), name


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_block_ttls_equal_block_ttl(seed: int) -> None:
    """A new block's TTL, compiled, is `block_ttl`'s (0 where the block was read: it keeps
    its own), for every shared family, long-expired and far-future blocks included."""
    rng = np.random.default_rng(seed)
    plan = compile_plan(default_feature_set(), lateness_s=int(rng.integers(0, 7200)))
    for fam in plan.shared:
        m = 50
        blocks = rng.integers(-5, 1 << 20, m) * 7 + rng.integers(0, 3, m)
        uniq = np.sort(rng.integers(0, 9, m) * BLOCK_KEY + np.abs(blocks))
        row = rng.integers(0, m, m)
        first_ts = rng.integers(-(10**15), 10**17, m)
        absent = rng.random(m) < 0.6
        want = np.where(absent, block_ttl(fam, uniq[row] % BLOCK_KEY, plan.lateness_s, first_ts), 0)
        late_us = plan.lateness_s * US
        args = (BLOCK_KEY, fam.slots, fam.span, fam.tile_us, late_us, US)
        got = new_block_ttls(uniq, row, first_ts, absent, *args)
        assert got.dtype == np.int64 and got.tolist() == want.tolist()
