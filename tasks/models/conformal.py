"""Conformal prediction intervals from calibration residuals.

Two ways to get calibration residuals, both computed on the training part only:

``cv`` (the default)
    The K folds of the cross-validation: every training row is predicted by the fold
    model that did not see it, and its absolute out-of-fold residual is a calibration
    score. The interval around the final model's prediction is ± the conformal quantile
    of those scores. No row is lost for fitting (unlike ``split``), and prediction needs
    the final model only, so the artifact holds one model instead of K (CV+ / jackknife+
    would keep all K fold models and evaluate each of them for every candidate). Its
    coverage is not guaranteed in finite samples as CV+'s 1 - 2α bound is; in practice the
    final model, fitted on all rows, is at least as accurate as the fold models, so the
    intervals are, if anything, slightly conservative — and the coverage reached on the
    held-out set is measured and reported with every model.
``split``
    A calibration part (a fifth of the training rows, drawn by group where the split is
    grouped) is held back from fitting; the model is fitted on the rest and its residuals
    on the calibration part are the scores. The classic split-conformal guarantee holds
    exactly (coverage at least the level when rows are exchangeable), at the cost of
    fitting on fewer rows.

Scores may be kept per category (Mondrian conformal prediction): the two-stage band-gap
model calibrates rows predicted metallic and rows predicted to have a gap separately, so a
semiconductor's interval reflects the errors made on semiconductors rather than being
swamped by the many metals predicted exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from matscreen.tasks.errors import ModelError


@dataclass(frozen=True)
class Calibration:
    """Calibration scores of a model, by category.

    Attributes
    ----------
    method
        ``cv`` or ``split``.
    level
        The default coverage level of the intervals.
    scores
        ``{category: absolute residuals}``; category ``"all"`` when not Mondrian.
    """

    method: str
    level: float
    scores: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """As JSON types."""
        return {"method": self.method, "level": self.level, "scores": self.scores}


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ⌈(n + 1)·level⌉-th smallest score: the half-width of a conformal interval.

    Returns inf when there are too few scores to reach the level (n < level / (1 - level)).

    Raises
    ------
    ModelError
        If the level is not in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ModelError(f"interval level must be between 0 and 1, got {level}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * level)
    if rank > len(scores):
        return math.inf
    return float(scores[rank - 1])


def calibrate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    method: str,
    level: float,
    categories: np.ndarray | None = None,
) -> Calibration:
    """Calibration scores from labels and predictions a model made without seeing them.

    Parameters
    ----------
    y_true, y_pred
        Labels and out-of-fold (or calibration-part) predictions.
    method
        How the predictions were made (``cv`` or ``split``), recorded with the scores.
    level
        The default coverage level.
    categories
        One category per row for Mondrian calibration; None calibrates all rows together.
    """
    residuals = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred))
    if categories is None:
        return Calibration(method, level, {"all": residuals.tolist()})
    categories = np.asarray(categories).astype(str)
    scores = {str(c): residuals[categories == c].tolist() for c in np.unique(categories)}
    return Calibration(method, level, scores)


def intervals(
    calibration: Calibration,
    y_pred: np.ndarray,
    level: float | None = None,
    categories: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the conformal intervals around point predictions.

    A row whose category has too few calibration scores to reach the level (or none)
    uses the scores of every category together.

    Parameters
    ----------
    calibration
        The model's calibration scores.
    y_pred
        Point predictions.
    level
        Coverage level; default the calibration's own.
    categories
        Each row's category, for a Mondrian calibration.
    """
    level = calibration.level if level is None else level
    y_pred = np.asarray(y_pred, dtype=np.float64)
    pooled = np.concatenate([np.asarray(s) for s in calibration.scores.values()])
    width = np.full(len(y_pred), conformal_quantile(pooled, level))
    if categories is not None and set(calibration.scores) != {"all"}:
        categories = np.asarray(categories).astype(str)
        for category, scores in calibration.scores.items():
            own = conformal_quantile(np.asarray(scores), level)
            if math.isfinite(own):
                width[categories == category] = own
    return y_pred - width, y_pred + width


def coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of the labels that lie inside their intervals (NaN when there are none)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    if not len(y_true):
        return math.nan
    return float(np.mean((y_true >= lower) & (y_true <= upper)))
