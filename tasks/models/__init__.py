"""Surrogate models: fitting, prediction records and the metrics computed from them.

:mod:`~matscreen.tasks.models.xgb` holds the campaign's original one-model xgboost fit;
:mod:`~matscreen.tasks.models.surrogate` the full protocol (algorithms, two-stage band gaps,
classifiers, cross-validation, hyperparameter search, conformal intervals) and its stored
model document.

The names below are imported on first use, so that reading an input file's columns (the
command line's first check) does not load xgboost and scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module of this package that defines it.
_EXPORTS = {
    "DEFAULT_XGBOOST_PARAMS": "xgb",
    "PredictionRecord": "xgb",
    "TrainedModel": "xgb",
    "fit_and_predict": "xgb",
    "load_regressor": "xgb",
    "classification_metrics": "metrics",
    "error_metrics": "metrics",
    "regression_metrics": "metrics",
    "Predictions": "surrogate",
    "SurrogateModel": "surrogate",
    "fit_surrogate_and_predict": "surrogate",
    "predict_surrogate": "surrogate",
    "train_surrogate": "surrogate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
