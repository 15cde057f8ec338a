"""Gradient-boosted tree regressors (xgboost) fitted on the training split only."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
import xgboost

from matscreen.tasks.errors import ModelError
from matscreen.tasks.spec import ModelSpec

#: Defaults for every xgboost model; a spec's ``params`` override them key by key.
DEFAULT_XGBOOST_PARAMS: dict[str, Any] = {
    "n_estimators": 600,
    "learning_rate": 0.05,
    "max_depth": 6,
    "min_child_weight": 1.0,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "tree_method": "hist",
    "n_jobs": 1,
}

MIN_TRAINING_ROWS = 10


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model as plain data: the xgboost native JSON plus what it was fitted on."""

    target: str
    algorithm: str
    params: dict[str, Any]
    feature_labels: list[str]
    train_ids: list[str]
    train_label_mean: float
    clip_min: float | None
    model_json: bytes
    versions: dict[str, str]


@dataclass(frozen=True)
class PredictionRecord:
    """Predictions of one model for a set of records, with the labels where known.

    ``baseline`` is the dummy model's prediction: the mean training label. Models with
    calibrated uncertainty also give each row's interval (``lower``, ``upper`` at
    ``level``) and, for classifiers and two-stage models, a probability.
    """

    target: str
    ids: list[str]
    y_true: list[float | None]
    y_pred: list[float]
    baseline: float
    n_train: int
    lower: list[float] | None = None
    upper: list[float] | None = None
    probability: list[float] | None = None
    level: float | None = None


def _check_training_data(
    target: str, ids: list[str], x: np.ndarray, y: np.ndarray, labels: list[str]
) -> None:
    if x.ndim != 2 or x.shape[1] != len(labels):
        raise ModelError(
            f"{target}: feature matrix has shape {x.shape}, expected (n, {len(labels)})"
        )
    if len(y) != x.shape[0]:
        raise ModelError(f"{target}: {len(y)} labels for {x.shape[0]} feature rows")
    if len(y) < MIN_TRAINING_ROWS:
        raise ModelError(
            f"{target}: {len(y)} training rows with labels; at least {MIN_TRAINING_ROWS} needed"
        )
    bad = [ids[i] for i in np.flatnonzero(~np.isfinite(y))]
    if bad:
        raise ModelError(
            f"{target}: {len(bad)} training labels are NaN or infinite, e.g. {bad[:5]}"
        )


def load_regressor(model: TrainedModel) -> xgboost.XGBRegressor:
    """Rebuild the xgboost regressor from its native JSON."""
    regressor = xgboost.XGBRegressor()
    regressor.load_model(bytearray(model.model_json))
    return regressor


def predict(model: TrainedModel, x: np.ndarray) -> np.ndarray:
    """Predict with a trained model, applying its lower clip (e.g. band gaps are >= 0).

    Raises
    ------
    ModelError
        If ``x`` does not have one column per feature the model was fitted on.
    """
    if x.ndim != 2 or x.shape[1] != len(model.feature_labels):
        raise ModelError(
            f"{model.target}: model expects {len(model.feature_labels)} features, got {x.shape}"
        )
    prediction = load_regressor(model).predict(x).astype(np.float64)
    if model.clip_min is not None:
        prediction = np.maximum(prediction, model.clip_min)
    return prediction


def fit_and_predict(
    spec: ModelSpec,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    test: tuple[list[str], np.ndarray, list[float | None]],
    seed: int,
) -> tuple[TrainedModel, PredictionRecord]:
    """Fit one model on the training rows and predict the held-out rows.

    Parameters
    ----------
    spec
        The model's spec (target, parameters, clip).
    labels
        Feature labels, one per column of the matrices.
    train
        ``(ids, features, labels)`` of the training rows; every label must be finite.
    test
        ``(ids, features, labels or None)`` of the held-out rows.
    seed
        Random seed of the fit.

    Returns
    -------
    (TrainedModel, PredictionRecord)
        The fitted model and its predictions for the held-out rows.

    Raises
    ------
    ModelError
        If the training data are too few, misshapen or hold NaN labels.
    """
    train_ids, x_train, y_train = train
    test_ids, x_test, y_test = test
    _check_training_data(spec.target, train_ids, x_train, y_train, labels)
    params = {**DEFAULT_XGBOOST_PARAMS, **spec.params, "random_state": seed}
    regressor = xgboost.XGBRegressor(**params)
    regressor.fit(x_train, y_train)
    model = TrainedModel(
        target=spec.target,
        algorithm=spec.algorithm,
        params=params,
        feature_labels=list(labels),
        train_ids=list(train_ids),
        train_label_mean=float(np.mean(y_train)),
        clip_min=spec.clip_min,
        model_json=bytes(regressor.get_booster().save_raw(raw_format="json")),
        versions={"xgboost": version("xgboost"), "numpy": version("numpy")},
    )
    y_pred = predict(model, x_test) if len(test_ids) else np.empty(0)
    record = PredictionRecord(
        target=spec.target,
        ids=list(test_ids),
        y_true=list(y_test),
        y_pred=[float(v) for v in y_pred],
        baseline=model.train_label_mean,
        n_train=len(train_ids),
    )
    return model, record
