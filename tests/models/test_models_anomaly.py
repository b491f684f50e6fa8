from __future__ import annotations

import numpy as np
import pytest

from fraudstream.models.anomaly import IsolationForestModel, fit_isolation_forest


def test_flat_forest_scores_like_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    X[:, 5] = 1.0  # a constant column is left out
    model, forest = fit_isolation_forest(X, trees=40, seed=1)
    assert 5 not in model.columns.tolist()
    Q = rng.normal(size=(500, 6)) * 2
    expected = -forest.score_samples(Q[:, model.columns])
    np.testing.assert_allclose(model.score(Q), expected, rtol=1e-12)
    again = IsolationForestModel.from_arrays(model.arrays())
    np.testing.assert_array_equal(again.score(Q), model.score(Q))


def test_outliers_score_higher() -> None:
    rng = np.random.default_rng(1)
    model, _ = fit_isolation_forest(rng.normal(size=(2000, 3)), trees=50)
    scores = model.score(np.array([[0.0, 0.0, 0.0], [8.0, -8.0, 8.0]]))
    assert scores[1] > 0.6 > scores[0]


def test_missing_and_infinite_values_are_read_as_scikit_learn_reads_them() -> None:
    """NaN read as 0, values rounded to float32 before the float64 thresholds; a row
    scored alone scores as in a batch."""
    rng = np.random.default_rng(2)
    model, forest = fit_isolation_forest(rng.normal(size=(2000, 4)), trees=30, seed=3)
    Q = rng.normal(size=(200, 4)) * 3
    Q[::7, 1] = np.nan
    Q[::11, 2] = np.inf
    Q[::13, 3] = -np.inf
    with np.errstate(over="ignore"):  # ±inf: beyond float64's largest, as infinite
        read = np.nan_to_num(Q[:, model.columns]).astype(np.float32)
    expected = -forest.score_samples(read)
    np.testing.assert_allclose(model.score(Q), expected, rtol=1e-12)
    one_by_one = np.concatenate([model.score(Q[i : i + 1]) for i in range(len(Q))])
    np.testing.assert_array_equal(one_by_one, model.score(Q))


def test_a_value_on_a_threshold_goes_left_and_shallow_leaves_stay_put() -> None:
    """One tree: the root splits x0 at 1.0; its left child is a leaf (path 1), its right
    child splits x0 at 2.0 into leaves of path 2 and 3."""
    model = IsolationForestModel(
        columns=np.array([0]),
        left=np.array([1, -1, 3, -1, -1]),
        right=np.array([2, -1, 4, -1, -1]),
        feature=np.zeros(5, dtype=np.int64),
        threshold=np.array([1.0, 0.0, 2.0, 0.0, 0.0]),
        leaf_value=np.array([0.0, 1.0, 0.0, 2.0, 3.0]),
        roots=np.array([0]),
        depth=2,
        norm=1.0,
    )
    x = np.array([[1.0], [1.5], [2.0], [2.5], [np.nan], [np.inf]])
    paths = -np.log2(model.score(x))
    np.testing.assert_allclose(paths, [1.0, 2.0, 2.0, 3.0, 1.0, 3.0])


def test_arrays_that_do_not_form_trees_are_refused() -> None:
    rng = np.random.default_rng(3)
    model, _ = fit_isolation_forest(rng.normal(size=(500, 3)), trees=5)
    arrays = model.arrays()
    root = int(arrays["roots"][0])
    arrays["left"][int(arrays["left"][root])] = root  # a child pointing back at the root
    broken = IsolationForestModel.from_arrays(arrays)
    with pytest.raises(ValueError, match="do not form trees"):
        broken.score(np.zeros((1, 3)))
