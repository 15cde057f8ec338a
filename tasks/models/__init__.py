"""Surrogate models: fitting, prediction records and the metrics computed from them."""

from matscreen.tasks.models.metrics import regression_metrics
from matscreen.tasks.models.xgb import (
    DEFAULT_XGBOOST_PARAMS,
    PredictionRecord,
    TrainedModel,
    fit_and_predict,
    load_regressor,
)

__all__ = [
    "DEFAULT_XGBOOST_PARAMS",
    "PredictionRecord",
    "TrainedModel",
    "fit_and_predict",
    "load_regressor",
    "regression_metrics",
]
