"""Conformal intervals: the quantile rule, and coverage on data with known noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.conformal import calibrate, conformal_quantile, coverage, intervals
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec

LABELS = ["a", "b", "c"]


def _noisy(n: int, sigma: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """y = f(x) + N(0, sigma): the best possible 90 % interval is f(x) ± 1.645 sigma."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    f = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - 0.3 * x[:, 2]
    return [f"s{seed}-{i}" for i in range(n)], x, f + rng.normal(scale=sigma, size=n)


def test_conformal_quantile_is_the_finite_sample_rank() -> None:
    scores = np.array([5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 6.0, 7.0])
    # n = 9, level 0.9: rank ceil(10 * 0.9) = 9, the largest score.
    assert conformal_quantile(scores, 0.9) == 9.0
    # level 0.5: rank ceil(10 * 0.5) = 5.
    assert conformal_quantile(scores, 0.5) == 5.0
    # n = 8 cannot reach 90 %: rank 9 > 8 gives an unbounded interval.
    assert math.isinf(conformal_quantile(scores[:8], 0.9))
    with pytest.raises(ModelError, match="between 0 and 1"):
        conformal_quantile(scores, 1.0)


def test_mondrian_intervals_use_each_category_and_fall_back_when_too_few() -> None:
    truth = np.array([0.0] * 19 + [1.0] * 19 + [5.0] * 3)
    predicted = np.array([0.0] * 19 + [0.0] * 19 + [0.0] * 3)
    categories = np.array(["metal"] * 19 + ["gap"] * 19 + ["rare"] * 3)
    calibration = calibrate(truth, predicted, "cv", 0.9, categories)
    lower, upper = intervals(calibration, np.array([2.0, 2.0, 2.0]), 0.9, categories[[0, 20, 40]])
    # metal: every residual 0; gap: every residual 1; rare has 3 scores (too few for 90 %),
    # so it takes the pooled scores: rank ceil(42 * 0.9) = 38 of 41 sorted residuals = 1.
    np.testing.assert_array_equal(upper - 2.0, [0.0, 1.0, 1.0])
    np.testing.assert_array_equal(2.0 - lower, [0.0, 1.0, 1.0])
    assert coverage(np.array([1.0, 2.5]), np.array([0.0, 0.0]), np.array([2.0, 2.0])) == 0.5


@pytest.mark.parametrize(
    ("algorithm", "interval", "params"),
    [
        ("xgboost", "cv", {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.1}),
        ("xgboost", "split", {"n_estimators": 150, "max_depth": 4, "learning_rate": 0.1}),
        ("kernel_ridge", "cv", {"alpha": 0.05, "gamma": 0.5}),
    ],
)
def test_ninety_percent_intervals_cover_about_ninety_percent(algorithm, interval, params) -> None:
    sigma = 0.3
    train = _noisy(1500, sigma, seed=11)
    test_ids, x_test, y_test = _noisy(4000, sigma, seed=12)
    spec = ModelSpec(target="y", algorithm=algorithm, params=params, interval=interval, cv_folds=5)
    model = train_surrogate(spec, LABELS, train, seed=0)
    predicted = predict_surrogate(model, test_ids, x_test, LABELS)
    reached = coverage(y_test, predicted.lower, predicted.upper)
    assert 0.85 <= reached <= 0.95
    # The intervals cannot be narrower than the noise allows: 2 x 1.645 sigma.
    width = float(np.mean(predicted.upper - predicted.lower))
    assert 2 * 1.645 * sigma * 0.9 < width < 2 * 1.645 * sigma * 2.0
    # Another level is read from the same calibration scores.
    wider = predict_surrogate(model, test_ids, x_test, LABELS, level=0.98)
    assert coverage(y_test, wider.lower, wider.upper) > 0.96
    np.testing.assert_array_equal(wider.prediction, predicted.prediction)


def test_classifier_prediction_sets_cover_the_true_class() -> None:
    ids, x, y = _noisy(2000, 0.3, seed=21)
    stable = (y < 0.4).astype(float)
    test_ids, x_test, y_test = _noisy(3000, 0.3, seed=22)
    spec = ModelSpec(
        target="stable", kind="classifier", params={"n_estimators": 80, "max_depth": 3}
    )
    model = train_surrogate(spec, LABELS, (ids, x, stable), seed=0)
    predicted = predict_surrogate(model, test_ids, x_test, LABELS)
    truth = (y_test < 0.4).astype(float)
    assert predicted.probability is not None
    assert set(np.unique(predicted.lower)) <= {0.0, 1.0}
    assert 0.87 <= coverage(truth, predicted.lower, predicted.upper) <= 0.95
    assert model.cv_metrics["roc_auc"] > 0.9
