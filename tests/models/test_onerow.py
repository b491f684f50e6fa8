"""The single-row path gives ``Booster.predict``'s value exactly (`fraudstream.models.onerow`)."""

from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest

from fraudstream.models import TrainedModel, onerow
from fraudstream.models.onerow import OneRow


def _rows(trained: TrainedModel, n: int) -> np.ndarray:
    """Rows spread like the features, with missing values (NaN) here and there."""
    rng = np.random.default_rng(7)
    width = len(trained.bundle.feature_names)
    x = rng.lognormal(0.0, 2.0, size=(n, width)) * rng.choice([-1.0, 1.0], size=(n, width))
    x[rng.random((n, width)) < 0.2] = np.nan
    x[:, : min(5, width)] = np.round(x[:, : min(5, width)])
    return np.asarray(x, dtype=np.float64)


def test_one_row_equals_predict_bit_for_bit(trained: TrainedModel) -> None:
    booster = trained.bundle.booster
    x = _rows(trained, 300)
    one = OneRow(booster, x.shape[1])
    fast = np.array([one.raw(x[i : i + 1]) for i in range(len(x))])
    slow = booster.predict(x, raw_score=True, num_threads=1)
    assert np.array_equal(fast, slow)
    assert np.unique(fast).size > 50  # the rows reach different leaves: a real comparison


def test_bundle_scores_a_lone_row_as_part_of_a_batch(trained: TrainedModel) -> None:
    """The API's lone request (one row: the single-row path) and a worker's batch (``predict``)
    give a transaction the same probability."""
    bundle = trained.bundle
    x = _rows(trained, 50)
    batch = bundle.probability(x)
    lone = np.concatenate([bundle.probability(x[i : i + 1]) for i in range(len(x))])
    assert np.array_equal(lone, batch)
    assert bundle._one_row is not None  # the lone rows took the single-row path


def test_one_row_refuses_a_row_of_another_width(trained: TrainedModel) -> None:
    width = len(trained.bundle.feature_names)
    one = OneRow(trained.bundle.booster, width)
    with pytest.raises(ValueError, match=f"expected {width} values, got {width - 1}"):
        one.raw(np.zeros(width - 1))


def test_handles_are_freed_with_their_object(
    trained: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made and dropped many times (a model reloaded on every promotion): each LightGBM
    handle is freed (through LightGBM's own free) when its object goes."""
    freed: list[int | None] = []

    def free(handle: ctypes.c_void_p) -> None:
        freed.append(handle.value)
        real_free(handle)

    real_free = onerow._free
    monkeypatch.setattr(onerow, "_free", free)
    width = len(trained.bundle.feature_names)
    row = _rows(trained, 1)
    expected = trained.bundle.booster.predict(row, raw_score=True, num_threads=1)[0]
    for _ in range(50):
        assert OneRow(trained.bundle.booster, width).raw(row) == expected
    gc.collect()
    assert len(freed) == 50 and all(freed)
