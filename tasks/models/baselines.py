"""The baselines every model is reported next to, fitted on the same training rows.

* dummy: the mean training label (regressors), the training share of class 1
  (classifiers); for regressors also the median training label, the best constant in
  absolute error;
* Magpie + random forest: scikit-learn's random forest on the Magpie element-property
  statistics alone (the composition-only reference of matbench), with the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matscreen.tasks.models.metrics import classification_metrics, error_metrics

#: Prefix of the columns matminer's ElementProperty (preset ``magpie``) produces.
MAGPIE_PREFIX = "MagpieData "


def dummy_baseline(kind: str, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """Metrics of the constant prediction learned from the training labels."""
    y_train = np.asarray(y_train, dtype=np.float64)
    y_test = np.asarray(y_test, dtype=np.float64)
    if kind == "classifier":
        share = float(np.mean(y_train))
        return {
            "name": "dummy (class-1 share)",
            **classification_metrics(y_test, np.full(len(y_test), share)),
        }
    mean = float(np.mean(y_train))
    return {"name": "dummy (mean)", **error_metrics(y_test, np.full(len(y_test), mean))}


def median_baseline(y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    """Metrics of the median training label: the constant with the smallest absolute error.

    Where most labels are one value (metals at a band gap of 0) it predicts that value,
    and is a much harder baseline to beat in MAE than the mean.
    """
    median = float(np.median(np.asarray(y_train, dtype=np.float64)))
    y_test = np.asarray(y_test, dtype=np.float64)
    return {"name": "dummy (median)", **error_metrics(y_test, np.full(len(y_test), median))}


def magpie_columns(labels: Sequence[str]) -> list[int]:
    """Indices of the Magpie element-property columns among feature labels."""
    return [i for i, label in enumerate(labels) if label.startswith(MAGPIE_PREFIX)]


def magpie_rf_baseline(
    kind: str,
    labels: Sequence[str],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    seed: int,
    n_estimators: int = 300,
    n_jobs: int = 1,
) -> dict[str, Any] | None:
    """Metrics of a random forest on the Magpie columns only; None without such columns.

    Missing values are replaced by the training medians (the forest does not need them
    scaled). Classifiers get a random-forest classifier and are scored by probability.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    columns = magpie_columns(labels)
    if not columns:
        return None
    x_train, y_train = np.asarray(train[0], dtype=np.float64)[:, columns], train[1]
    x_test, y_test = np.asarray(test[0], dtype=np.float64)[:, columns], test[1]
    with np.errstate(all="ignore"):
        medians = np.nan_to_num(np.nanmedian(np.where(np.isfinite(x_train), x_train, np.nan), 0))
    x_train = np.where(np.isfinite(x_train), x_train, medians)
    x_test = np.where(np.isfinite(x_test), x_test, medians)
    common = {"n_estimators": n_estimators, "random_state": seed, "n_jobs": n_jobs}
    if kind == "classifier":
        forest = RandomForestClassifier(**common).fit(x_train, y_train)
        probability = forest.predict_proba(x_test)[:, 1]
        return {
            "name": "Magpie + RF",
            "n_features": len(columns),
            **classification_metrics(y_test, probability),
        }
    forest = RandomForestRegressor(max_features=0.33, **common).fit(x_train, y_train)
    prediction = forest.predict(x_test)
    return {"name": "Magpie + RF", "n_features": len(columns), **error_metrics(y_test, prediction)}
