"""Metrics computed from prediction records (never from a model directly)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matscreen.tasks.models.records import PredictionRecord


def regression_metrics(record: PredictionRecord) -> dict[str, float | int]:
    """Score a prediction record on the rows that have labels.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``r2``, ``dummy_mae`` (mean-of-training-labels baseline),
        ``n_train`` and ``n_test`` (held-out rows with a label); for a record with
        intervals also ``level``, ``coverage`` (share of labels inside their interval) and
        ``mean_width``.
    """
    known = np.array([t is not None and math.isfinite(t) for t in record.y_true], dtype=bool)
    y_true = np.array([t for t, k in zip(record.y_true, known, strict=True) if k], dtype=float)
    y_pred = np.asarray(record.y_pred, dtype=np.float64)[known]
    metrics: dict[str, float | int] = {
        **error_metrics(y_true, y_pred),
        "dummy_mae": float(np.mean(np.abs(y_true - record.baseline))) if len(y_true) else math.nan,
        "n_train": record.n_train,
        "n_test": len(y_true),
    }
    if record.lower is not None and record.upper is not None and record.level is not None:
        lower = np.asarray(record.lower, dtype=np.float64)[known]
        upper = np.asarray(record.upper, dtype=np.float64)[known]
        metrics["level"] = record.level
        metrics["coverage"] = (
            float(np.mean((y_true >= lower) & (y_true <= upper))) if len(y_true) else math.nan
        )
        metrics["mean_width"] = float(np.mean(upper - lower)) if len(y_true) else 0.0
    return metrics


def error_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² of predictions against labels (NaN when there are no rows).

    R² is NaN when the labels are constant.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if not len(y_true):
        return {"mae": math.nan, "rmse": math.nan, "r2": math.nan}
    residual = y_true - y_pred
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(residual))),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "r2": 1.0 - float(np.sum(residual**2)) / total if total > 0 else math.nan,
    }


def classification_metrics(
    y_true: np.ndarray, probability: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Precision, recall, F1, accuracy and ROC-AUC of class-1 probabilities.

    ROC-AUC is NaN when the labels hold one class only; precision is NaN when nothing is
    predicted positive.
    """
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    probability = np.asarray(probability, dtype=np.float64)
    predicted = (probability >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (y_true == 1)))
    fp = int(np.sum((predicted == 1) & (y_true == 0)))
    fn = int(np.sum((predicted == 0) & (y_true == 1)))
    precision = tp / (tp + fp) if tp + fp else math.nan
    recall = tp / (tp + fn) if tp + fn else math.nan
    f1 = (
        2 * precision * recall / (precision + recall)
        if tp and math.isfinite(precision) and math.isfinite(recall)
        else 0.0
    )
    auc = float(roc_auc_score(y_true, probability)) if len(set(y_true.tolist())) == 2 else math.nan
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": float(np.mean(predicted == y_true)) if len(y_true) else math.nan,
        "roc_auc": auc,
        "positives": int(np.sum(y_true == 1)),
    }


def json_safe(value: Any) -> Any:
    """Metrics with NaN and infinities replaced by None, so that they are strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
