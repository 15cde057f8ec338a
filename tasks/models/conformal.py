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

Widths (``width`` of a calibration):

``adaptive`` (the default)
    Normalized scores: each residual is divided by its row's difficulty, the absolute
    residual a difficulty model (:mod:`~matscreen.tasks.models.difficulty`, cross-fitted
    so that no row's difficulty saw its residual) expects there plus a floor β. A new
    row's half-width is the conformal quantile of these scores times its own difficulty:
    the interval is as wide as errors on similar rows have been.
``constant``
    The scores are the absolute residuals themselves: one width for every row (of a
    category).

Scores may be kept per category (Mondrian conformal prediction): the two-stage band-gap
model calibrates rows predicted metallic and rows predicted to have a gap separately, so a
semiconductor's interval reflects the errors made on semiconductors rather than being
swamped by the many metals predicted exactly. Normalized scores work the same way: one
quantile of the normalized scores per category.
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
        ``{category: scores}``; category ``"all"`` when not Mondrian. The scores are
        absolute residuals (``constant``) or absolute residuals divided by the row's
        difficulty (``adaptive``).
    width
        ``constant`` or ``adaptive``: whether a row's half-width is the quantile of the
        scores, or that quantile times the row's difficulty.
    """

    method: str
    level: float
    scores: dict[str, list[float]] = field(default_factory=dict)
    width: str = "constant"

    def to_dict(self) -> dict[str, object]:
        """As JSON types."""
        return {
            "method": self.method,
            "level": self.level,
            "scores": self.scores,
            "width": self.width,
        }


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
    difficulty: np.ndarray | None = None,
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
    difficulty
        Each row's difficulty (expected absolute residual plus the floor, all positive),
        estimated without the row, for normalized scores (``adaptive`` widths); None
        keeps the absolute residuals (``constant`` widths).

    Raises
    ------
    ModelError
        If a difficulty is not positive and finite.
    """
    residuals = np.abs(np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred))
    width = "constant"
    if difficulty is not None:
        difficulty = np.asarray(difficulty, dtype=np.float64)
        if difficulty.shape != residuals.shape or not np.all(np.isfinite(difficulty)):
            raise ModelError("calibration: difficulties must be finite, one per row")
        if np.any(difficulty <= 0):
            raise ModelError("calibration: difficulties must be positive (add the floor)")
        residuals, width = residuals / difficulty, "adaptive"
    if categories is None:
        return Calibration(method, level, {"all": residuals.tolist()}, width)
    categories = np.asarray(categories).astype(str)
    scores = {str(c): residuals[categories == c].tolist() for c in np.unique(categories)}
    return Calibration(method, level, scores, width)


def intervals(
    calibration: Calibration,
    y_pred: np.ndarray,
    level: float | None = None,
    categories: np.ndarray | None = None,
    difficulty: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the conformal intervals around point predictions.

    A row whose category has too few calibration scores to reach the level (or none)
    uses the scores of every category together. The half-width is the quantile of the
    scores at ``level``, times the row's difficulty for ``adaptive`` calibrations, so that
    every level's widths come from the same scores.

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
    difficulty
        Each row's difficulty (expected absolute residual plus the floor), needed by an
        ``adaptive`` calibration.

    Raises
    ------
    ModelError
        If an ``adaptive`` calibration is given no difficulties, or the wrong number.
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
    if calibration.width == "adaptive":
        if difficulty is None or len(difficulty) != len(y_pred):
            raise ModelError("adaptive intervals need one difficulty per predicted row")
        with np.errstate(invalid="ignore"):
            # An infinite quantile stays infinite whatever the (positive) difficulty.
            width = width * np.asarray(difficulty, dtype=np.float64)
    return y_pred - width, y_pred + width


def coverage(y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of the labels that lie inside their intervals (NaN when there are none)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    if not len(y_true):
        return math.nan
    return float(np.mean((y_true >= lower) & (y_true <= upper)))


def coverage_by_width(
    y_true: np.ndarray, lower: np.ndarray, upper: np.ndarray, parts: int = 5
) -> list[dict[str, float | int]]:
    """Coverage of the intervals per equal-count part of the rows sorted by width.

    Adaptive intervals should cover at their level in every part, the narrowest as well
    as the widest; constant ones often over-cover easy rows and under-cover hard ones.

    Returns
    -------
    list of dict
        ``quintile`` (1 = the narrowest part), ``mean_width``, ``coverage`` and ``n`` per
        non-empty part; ties in width are kept in row order.
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    width = upper - lower
    order = np.argsort(width, kind="stable")
    rows: list[dict[str, float | int]] = []
    for number, chunk in enumerate(np.array_split(order, parts), start=1):
        if not len(chunk):
            continue
        rows.append(
            {
                "quintile": number,
                "mean_width": float(np.mean(width[chunk])),
                "coverage": coverage(y_true[chunk], lower[chunk], upper[chunk]),
                "n": len(chunk),
            }
        )
    return rows
