"""First-seen sets (`fraudstream.features.seen`): exact while small, then Bloom filters that
keep their configured false-positive rate; the engine and parity tests cover them end to end."""

from __future__ import annotations

import numpy as np
import pytest

from fraudstream.errors import ConfigError
from fraudstream.features.definitions import FirstSeen
from fraudstream.features.seen import SeenState, positions, replay, value_hashes


def test_replay_is_exact_then_bloom_then_rotates() -> None:
    spec = FirstSeen("ip", words=2, fp_rate=0.01)
    state = SeenState.empty(spec, 1)
    values = [f"v{i}" for i in range(spec.capacity + 3)]
    recent = values[3:]  # the last `capacity` distinct values are always remembered
    group = np.zeros(len(values) + len(recent), dtype=np.int64)
    hashes = value_hashes(values + recent)
    first = replay(spec, state, group, hashes, np.ones(len(group), dtype=bool))
    assert first[: len(values)].all()
    assert not first[len(values) :].any()
    assert state.prev.any()  # rotated (twice)
    forgotten = replay(spec, state, group[:3], hashes[:3], np.ones(3, dtype=bool))
    assert forgotten.all()  # unused for more than `capacity` distinct others


def test_bloom_false_positive_rate_at_capacity_is_within_the_configured_rate() -> None:
    spec = FirstSeen("merchant", words=32, fp_rate=0.01)
    rows = 200
    state = SeenState.empty(spec, rows)
    rng = np.random.default_rng(0)
    full = rng.integers(0, 2**63, (rows, 2 * spec.capacity - 1), dtype=np.uint64)
    group = np.repeat(np.arange(rows), full.shape[1])
    replay(spec, state, group, full.ravel(), np.ones(full.size, dtype=bool))
    assert (state.count >= spec.capacity - 5).all()  # both generations (nearly) full
    probe = rng.integers(0, 2**63, rows * 500, dtype=np.uint64)
    group = np.repeat(np.arange(rows), 500)
    first = replay(spec, state, group, probe, np.zeros(len(probe), dtype=bool))
    rate = 1 - first.mean()
    assert spec.fp_rate / 4 < rate < spec.fp_rate


def test_first_seen_definitions_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        FirstSeen("shoe")  # type: ignore[arg-type]
    assert err.value.key == "what"
    with pytest.raises(ConfigError):
        FirstSeen("ip", words=12)
    with pytest.raises(ConfigError):
        FirstSeen("ip", words=1, fp_rate=1e-9)


@pytest.mark.parametrize("spec", [FirstSeen("device", words=1), FirstSeen("merchant", words=32)])
def test_bloom_positions_are_the_double_hashing_formula(spec: FirstSeen) -> None:
    """The compiled positions are the numpy formula's, bit for bit (the state depends on
    them: a filter written by one release is read by the next)."""
    h = np.random.default_rng(7).integers(0, 2**64, 500, dtype=np.uint64)
    h[:3] = [0, 2**64 - 1, 2**32 - 1]
    h1 = (h & np.uint64(0xFFFFFFFF)).astype(np.int64)
    h2 = ((h >> np.uint64(32)) | np.uint64(1)).astype(np.int64)
    i = np.arange(spec.hashes, dtype=np.int64)
    pos = (h1[:, None] + i[None, :] * h2[:, None] + ((i**3 - i) // 6)[None, :]) & (spec.bits - 1)
    word, mask = positions(spec, h)
    assert word.dtype == np.int64 and mask.dtype == np.uint64
    assert np.array_equal(word, pos >> 6)
    assert np.array_equal(mask, np.left_shift(np.uint64(1), (pos & 63).astype(np.uint64)))
    assert positions(spec, h[:0])[0].shape == (0, spec.hashes)
