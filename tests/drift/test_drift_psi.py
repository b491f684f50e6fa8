"""PSI maths, reference binning and the rolling window, on made-up numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fraudstream.drift.psi import EPSILON, bin_counts, level, psi
from fraudstream.drift.reference import Reference, build_reference
from fraudstream.drift.window import BIN_ROWS, DriftWindow
from fraudstream.errors import DriftError


def test_identical_distributions_have_zero_psi() -> None:
    assert psi([10, 20, 30, 40], [1, 2, 3, 4]) == 0.0


def test_known_value() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi([1, 1], [1, 3]) == pytest.approx(expected)


def test_psi_is_symmetric_in_its_terms() -> None:
    assert psi([1, 3], [3, 1]) == pytest.approx(psi([3, 1], [1, 3]))


def test_an_empty_bin_counts_with_epsilon_and_stays_finite() -> None:
    value = psi([90, 10], [100, 0])
    expected = (1.0 - 0.9) * math.log(1.0 / 0.9) + (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert value == pytest.approx(expected, rel=1e-3)
    assert 0.6 < value < 0.8


def test_bins_empty_on_both_sides_add_nothing() -> None:
    assert psi([5, 0, 5], [5, 0, 5]) == 0.0


@pytest.mark.parametrize(
    ("expected", "actual", "words"),
    [([1, 1], [1, 1, 1], "3 bins, the reference has 2"), ([1, 1], [0, 0], "nothing counted")],
)
def test_mismatched_or_empty_counts_are_refused(
    expected: list[int], actual: list[int], words: str
) -> None:
    with pytest.raises(DriftError, match=words):
        psi(expected, actual)


def test_levels_follow_the_usual_reading() -> None:
    assert [level(v) for v in (0.0, 0.099, 0.1, 0.25, 0.2501)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "significant",
    ]


def test_missing_values_have_their_own_bin() -> None:
    assert bin_counts([np.nan, np.nan, 3.0], [1.0]).tolist() == [0, 1, 2]


def reference(rng: np.random.Generator, rows: int = 5_000) -> Reference:
    X = np.column_stack(
        [rng.normal(0, 1, rows), rng.exponential(1, rows), rng.integers(0, 3, rows)]
    )
    scores = np.clip(rng.exponential(40, rows), 0, 1000).round()
    importance = {"a": 5.0, "b": 3.0, "c": 1.0, "unused": 0.0}
    return build_reference(scores, X, ["a", "b", "c"], importance, {"review": 300, "block": 700})


def test_reference_bins_are_deciles_plus_thresholds() -> None:
    ref = reference(np.random.default_rng(1))
    assert ref.feature_names == ["a", "b", "c"]
    assert 300.0 in ref.score.edges and 700.0 in ref.score.edges
    assert len(ref.features[0].edges) == 9  # a continuous feature: nine deciles
    assert ref.features[2].edges == (0.0, 1.0, 2.0)  # ties merged
    for binned in (ref.score, *ref.features):
        assert sum(binned.shares) == pytest.approx(1.0, abs=1e-5)
        assert len(binned.shares) == len(binned.edges) + 2


def test_reference_round_trips_through_meta_and_old_meta_has_none() -> None:
    ref = reference(np.random.default_rng(2))
    assert Reference.from_meta({"drift": ref.to_meta()}) == ref
    assert Reference.from_meta({"feature_names": ["a"]}) is None


def test_window_of_the_reference_population_is_stable_and_a_shift_is_not() -> None:
    rng = np.random.default_rng(3)
    ref = reference(rng)
    window = DriftWindow(ref, "v1", ["x", "a", "b", "c"], capacity=4_000, min_rows=1_000)
    for _ in range(10):
        X = np.column_stack(
            [np.zeros(500), rng.normal(0, 1, 500), rng.exponential(1, 500), rng.integers(0, 3, 500)]
        )
        window.observe(X, np.clip(rng.exponential(40, 500), 0, 1000).round())
    calm = window.figures()
    assert calm.rows == 4_000  # the last 8 batches of 500: the window is rows, not time
    assert calm.score.psi is not None and calm.score.psi < 0.05
    assert all(f.level == "stable" for f in calm.features)
    for _ in range(8):
        X = np.column_stack(
            [np.zeros(500), rng.normal(2, 1, 500), rng.exponential(1, 500), rng.integers(0, 3, 500)]
        )
        window.observe(X, np.clip(rng.exponential(200, 500), 0, 1000).round())
    shifted = window.figures()
    assert shifted.score.level == "significant"
    assert [f.level for f in shifted.features] == ["significant", "stable", "stable"]


def test_too_few_rows_give_no_figure() -> None:
    rng = np.random.default_rng(4)
    window = DriftWindow(reference(rng), "v1", ["a", "b", "c"], min_rows=1_000)
    window.observe(np.zeros((10, 3)), np.zeros(10))
    figures = window.figures()
    assert figures.rows == 10 and figures.score.psi is None and figures.worst() is None


def test_lone_rows_count_as_the_same_rows_in_one_batch() -> None:
    """An API process observes one row at a time: binned `BIN_ROWS` together (or when the
    counts are read), they count exactly as the same rows scored as one batch, including
    a column the live features lack (``b``: counted as missing)."""
    rng = np.random.default_rng(5)
    ref = reference(rng)
    X = np.column_stack([rng.normal(0, 1, 700), rng.integers(0, 3, 700)])
    scores = np.clip(rng.exponential(40, 700), 0, 1000).round()
    whole = DriftWindow(ref, "v1", ["a", "c"], capacity=10_000)
    whole.observe(X, scores)
    lone = DriftWindow(ref, "v1", ["a", "c"], capacity=10_000)
    for i in range(600):
        lone.observe(X[i : i + 1], scores[i : i + 1])
    assert lone._pending_rows == 600 - 2 * BIN_ROWS  # binned twice, the rest waits
    lone.observe(X[600:], scores[600:])
    assert lone.rows == whole.rows == 700
    assert np.array_equal(lone.counts, whole.counts) and lone.counts.sum() > 0
    assert lone.figures() == whole.figures()
