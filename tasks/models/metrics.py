"""Metrics computed from prediction records (never from a model directly)."""

from __future__ import annotations

import math

import numpy as np

from matscreen.tasks.models.xgb import PredictionRecord


def regression_metrics(record: PredictionRecord) -> dict[str, float | int]:
    """Score a prediction record on the rows that have labels.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``r2``, ``dummy_mae`` (mean-of-training-labels baseline),
        ``n_train`` and ``n_test`` (held-out rows with a label).
    """
    pairs = [
        (t, p)
        for t, p in zip(record.y_true, record.y_pred, strict=True)
        if t is not None and math.isfinite(t)
    ]
    if not pairs:
        return {
            "mae": math.nan,
            "rmse": math.nan,
            "r2": math.nan,
            "dummy_mae": math.nan,
            "n_train": record.n_train,
            "n_test": 0,
        }
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    residual = y_true - y_pred
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(residual))),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else math.nan,
        "dummy_mae": float(np.mean(np.abs(y_true - record.baseline))),
        "n_train": record.n_train,
        "n_test": len(pairs),
    }
