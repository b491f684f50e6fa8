from __future__ import annotations

import numpy as np

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
