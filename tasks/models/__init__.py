"""Surrogate models: fitting, prediction records and the metrics computed from them.

:mod:`~matscreen.tasks.models.training` holds the protocol (folds, hyperparameter search,
conformal intervals, final fit; with :mod:`~matscreen.tasks.models.folds`,
:mod:`~matscreen.tasks.models.estimators` and :mod:`~matscreen.tasks.models.search`),
:mod:`~matscreen.tasks.models.surrogate` the stored model document and
:mod:`~matscreen.tasks.models.prediction` its application to new rows;
:mod:`~matscreen.tasks.models.evaluation` scores a model on its held-out rows next to the
baselines (:func:`fit_and_evaluate` is the training step of the
campaign and of ``matscreen train``).

The names below are imported on first use, so that reading an input file's columns (the
command line's first check) does not load xgboost and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module of this package that defines it.
_EXPORTS = {
    "DEFAULT_XGBOOST_PARAMS": "pipeline",
    "PredictionRecord": "records",
    "FittedSurrogate": "evaluation",
    "fit_and_evaluate": "evaluation",
    "classification_metrics": "metrics",
    "error_metrics": "metrics",
    "regression_metrics": "metrics",
    "Predictions": "surrogate",
    "SurrogateModel": "surrogate",
    "predict_surrogate": "prediction",
    "train_surrogate": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
