"""Difficulty models: how large a surrogate's error is expected to be, row by row.

A difficulty model g(x) predicts the absolute out-of-fold residual |r| of a surrogate from
the same features. Dividing each calibration residual by the difficulty of its row gives
normalized conformal scores s = |r| / (g(x) + β), and an interval of half-width
q(s) · (g(x) + β): narrow where the surrogate has been accurate on similar rows, wide
where it has not (Lei et al., JASA 2018, "locally weighted" conformal prediction).

Honesty: the score of a calibration row must use a difficulty estimate that did not see
the row, so g is cross-fitted over the same folds as the surrogate's out-of-fold
predictions (``g_oof(x_i)`` from the fold model that did not hold row i); the final g,
fitted on every calibration row, sizes the intervals of new rows.

The floor β is a tenth of the mean absolute residual. Boosted trees fitted to |r| may
predict values near zero (or below; they are clipped at zero) for rows that resemble a
few exact fits, and an interval scaled by such a value would claim near certainty: the
floor keeps every interval at least about a tenth of a typical one, while changing the
ratio of two typical difficulties by less than ten per cent. A floor proportional to the
residuals keeps the scores unit-free.

The estimator is small (shallow trees, many rows per leaf) because |r| is a noisy target:
an xgboost regressor on one thread, whatever the surrogate's algorithm, stored in
xgboost's own JSON format (xgboost is a dependency of matscreen either way; scikit-learn's
histogram gradient boosting, the other candidate, runs OpenMP threads that slow down
badly on a machine shared with other jobs). It routes missing feature values natively;
infinities are treated as missing.

How many boosting rounds it gets is chosen by the same cross-fit: the count in
:data:`ROUNDS` whose out-of-fold predictions of |r| have the smallest mean squared error.
How predictable the errors are differs a lot between targets (on the CMR heats of
formation a difficulty model explains about a tenth of the variance of |r|, on the
heteroscedastic data of the tests about a quarter), and an over-fitted difficulty model
widens the intervals instead of sharpening them. Zero rounds (a constant difficulty) can
win: the widths are then constant, as for ``interval_width: constant``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.pipeline import Pipeline

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.pipeline import FeaturePreprocessor
from matscreen.tasks.models.serialize import estimator_from_dict, estimator_to_dict

#: The floor β as a share of the mean absolute calibration residual.
FLOOR_FRACTION = 0.1

#: Fewest calibration rows a difficulty model is fitted on; below it widths are constant.
MIN_DIFFICULTY_ROWS = 50

#: Boosting rounds tried for a difficulty model (0: a constant difficulty).
ROUNDS = (0, 25, 50, 100, 200, 400)

#: Learning rate of a difficulty model.
_RATE = 0.05


def build_difficulty(n_rows: int, seed: int, rounds: int = ROUNDS[-1]) -> Pipeline:
    """An unfitted difficulty model for ``n_rows`` calibration rows.

    Leaves hold at least a fiftieth of the rows (at least 10), so that each leaf's mean
    absolute residual is an average over several rows rather than one lucky fit.
    """
    import xgboost

    model = xgboost.XGBRegressor(
        n_estimators=rounds,
        learning_rate=_RATE,
        max_depth=3,
        min_child_weight=float(max(10, n_rows // 50)),
        subsample=0.8,
        colsample_bytree=0.5,
        reg_lambda=1.0,
        tree_method="hist",
        n_jobs=1,
        random_state=seed,
    )
    return Pipeline([("prep", FeaturePreprocessor(impute=False)), ("model", model)])


def floor_of(residuals: np.ndarray) -> float:
    """The floor β added to every difficulty: :data:`FLOOR_FRACTION` of the mean |r|.

    A tiny positive value when every residual is zero, so that scores stay finite.
    """
    return max(FLOOR_FRACTION * float(np.mean(np.abs(residuals))), 1e-12)


def predict_difficulty(estimator: BaseEstimator, x: np.ndarray) -> np.ndarray:
    """The predicted absolute residual of each row, clipped at zero (without the floor)."""
    return np.maximum(np.asarray(estimator.predict(x), dtype=np.float64), 0.0)


def _staged(estimator: Pipeline, x: np.ndarray, rounds: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Predictions of a fitted difficulty model after each of ``rounds`` boosting rounds."""
    z = estimator.named_steps["prep"].transform(x)
    model = estimator.named_steps["model"]
    return {k: model.predict(z, iteration_range=(0, k)) for k in rounds}


def cross_fit_difficulty(
    x: np.ndarray,
    residuals: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
) -> tuple[BaseEstimator | None, np.ndarray, dict[str, Any]]:
    """Choose and fit g, and predict each row by the fold's g that did not see it.

    Each fold's model is fitted with the most rounds of :data:`ROUNDS` and read after
    each count; the count with the smallest out-of-fold squared error on |r| is kept.

    Parameters
    ----------
    x
        Features of the calibration rows.
    residuals
        Their out-of-fold (or calibration-part) residuals.
    folds
        (fit rows, held rows) index pairs covering every row once as held.

    Returns
    -------
    (final estimator or None, out-of-fold difficulties, selection)
        The estimator is None when zero rounds (a constant) won; ``selection`` holds the
        chosen ``rounds`` and the out-of-fold ``mse`` by count of rounds.

    Raises
    ------
    ModelError
        If the folds do not hold every row out exactly once.
    """
    target = np.abs(np.asarray(residuals, dtype=np.float64))
    held = np.concatenate([h for _, h in folds]) if folds else np.empty(0, dtype=int)
    if len(held) != len(target) or len(np.unique(held)) != len(target):
        raise ModelError(
            f"difficulty model: the folds hold out {len(np.unique(held))} of {len(target)} rows"
        )
    boosted = tuple(k for k in ROUNDS if k > 0)
    oof = {k: np.empty(len(target)) for k in ROUNDS}
    template = build_difficulty(len(target), seed)
    for fit_rows, held_rows in folds:
        fold_model = clone(template).fit(x[fit_rows], target[fit_rows])
        oof[0][held_rows] = float(np.mean(target[fit_rows]))
        for k, values in _staged(fold_model, x[held_rows], boosted).items():
            oof[k][held_rows] = np.maximum(values, 0.0)
    mse = {k: float(np.mean((target - oof[k]) ** 2)) for k in ROUNDS}
    rounds = min(ROUNDS, key=lambda k: (mse[k], k))
    selection = {"rounds": rounds, "mse": {str(k): v for k, v in mse.items()}}
    if rounds == 0:
        return None, oof[0], selection
    final = build_difficulty(len(target), seed, rounds).fit(x, target)
    return final, oof[rounds], selection


def difficulty_to_dict(estimator: BaseEstimator, floor: float) -> dict[str, Any]:
    """A fitted difficulty model and its floor as JSON types."""
    return {"floor": float(floor), "estimator": estimator_to_dict(estimator)}


def difficulty_from_dict(state: dict[str, Any]) -> tuple[BaseEstimator, float]:
    """(estimator, floor) from :func:`difficulty_to_dict`.

    Raises
    ------
    ModelError
        If the stored estimator cannot be rebuilt.
    """
    return estimator_from_dict(state["estimator"]), float(state["floor"])
