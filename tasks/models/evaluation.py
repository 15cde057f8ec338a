"""Score a trained model on its held-out rows, next to the baselines on the same split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from matscreen.tasks.models.baselines import dummy_baseline, magpie_rf_baseline, median_baseline
from matscreen.tasks.models.conformal import coverage
from matscreen.tasks.models.interpret import permutation_importance
from matscreen.tasks.models.metrics import classification_metrics, error_metrics
from matscreen.tasks.models.surrogate import Predictions, SurrogateModel, predict_surrogate


@dataclass(frozen=True)
class Evaluation:
    """Held-out predictions, metrics, baselines and permutation importance of a model."""

    predictions: Predictions
    y_true: np.ndarray
    metrics: dict[str, Any]
    baselines: list[dict[str, Any]]
    importance: list[dict[str, Any]]


def held_out_metrics(
    model: SurrogateModel, predicted: Predictions, y_true: np.ndarray, n_train: int
) -> dict[str, Any]:
    """The model's held-out metrics, from its predictions and the held-out labels.

    Regressors: ``mae``, ``rmse``, ``r2``, ``dummy_mae``; classifiers: ``precision``,
    ``recall``, ``f1``, ``accuracy``, ``roc_auc``; both: ``n_train``, ``n_test`` and, with
    intervals, ``level``, ``coverage`` and ``mean_width``. A two-stage gap model adds the
    classifier's scores (``gap_classifier``) and the coverage on rows with a gap.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    if model.is_classifier:
        truth = (
            (y_true <= model.positive_at_most).astype(float)
            if model.positive_at_most is not None
            else y_true
        )
        assert predicted.probability is not None
        metrics: dict[str, Any] = classification_metrics(truth, predicted.probability)
    else:
        truth = y_true
        metrics = error_metrics(truth, predicted.prediction)
        metrics["dummy_mae"] = float(np.mean(np.abs(truth - model.train_label_mean)))
    metrics.update(n_train=n_train, n_test=len(truth))
    if predicted.level is not None:
        metrics.update(
            level=predicted.level,
            coverage=coverage(truth, predicted.lower, predicted.upper),
            mean_width=float(np.mean(predicted.upper - predicted.lower)) if len(truth) else 0.0,
        )
    if model.kind == "two_stage_gap" and predicted.probability is not None:
        threshold = model.estimator["threshold"]
        has_gap = truth > threshold
        metrics["gap_classifier"] = classification_metrics(
            has_gap.astype(float), predicted.probability
        )
        if predicted.level is not None and has_gap.any():
            metrics["coverage_with_gap"] = coverage(
                truth[has_gap], predicted.lower[has_gap], predicted.upper[has_gap]
            )
    return metrics


def evaluate(
    model: SurrogateModel,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    test: tuple[list[str], np.ndarray, np.ndarray],
    seed: int,
    importance_repeats: int = 5,
    baseline_trees: int = 300,
    n_jobs: int = 1,
) -> Evaluation:
    """Predict the held-out rows and score them, the baselines and feature importance.

    The baselines are fitted on the same training rows (all of them, also for a model
    calibrated by ``interval: split``) and scored on the same held-out rows.
    """
    _, x_train, y_train = train
    test_ids, x_test, y_test = test
    y_test = np.asarray(y_test, dtype=np.float64)
    predicted = predict_surrogate(model, test_ids, x_test, labels)
    metrics = held_out_metrics(model, predicted, y_test, len(train[0]))
    kind = "classifier" if model.is_classifier else "regressor"
    y_fit = np.asarray(y_train, dtype=np.float64)
    y_score = y_test
    if model.is_classifier and model.positive_at_most is not None:
        y_fit = (y_fit <= model.positive_at_most).astype(float)
        y_score = (y_score <= model.positive_at_most).astype(float)
    baselines = [dummy_baseline(kind, y_fit, y_score)]
    if kind == "regressor":
        baselines.append(median_baseline(y_fit, y_score))
    forest = magpie_rf_baseline(
        kind, labels, (x_train, y_fit), (x_test, y_score), seed, baseline_trees, n_jobs
    )
    if forest is not None:
        baselines.append(forest)
    importance = (
        permutation_importance(model, x_test, y_test, seed, importance_repeats)
        if importance_repeats
        else []
    )
    return Evaluation(predicted, y_test, metrics, baselines, importance)
