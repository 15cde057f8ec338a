"""Train a surrogate: folds, search, conformal calibration, final fit.

The protocol, on the training part only (the held-out part is chosen before and never
passed here):

1. the labels are checked (finite numbers; enough rows, classes and groups for the folds);
2. K folds are drawn — by group when the split is grouped, stratified by class (or metal /
   non-metal for the two-stage gap model) otherwise — and reused by every later step;
3. an optional hyperparameter search (randomized or successive halving) scores candidates
   by cross-validation over those folds, on a Dask cluster when one is given;
4. with the chosen parameters, each fold's model predicts the rows it did not see: the
   out-of-fold predictions give the cross-validated metrics and the conformal calibration
   scores (or, for ``interval: split``, a calibration part is held back instead);
5. with ``interval_width: adaptive``, a difficulty model of the absolute residuals is
   cross-fitted over the same folds (over folds of the calibration part for ``split``) and
   the scores are normalized by it (:mod:`~matscreen.tasks.models.difficulty`); the
   two-stage gap model also calibrates its regressor on the rows that truly have a gap
   (the conditional interval of its hurdle distribution);
6. the final model is fitted on every training row, and the applicability domain of the
   training rows is measured (:mod:`~matscreen.tasks.models.domain`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from matscreen.tasks.models.conformal import Calibration, calibrate
from matscreen.tasks.models.difficulty import (
    MIN_DIFFICULTY_ROWS,
    cross_fit_difficulty,
    difficulty_to_dict,
    floor_of,
)
from matscreen.tasks.models.domain import fit_domain
from matscreen.tasks.models.estimators import (
    build_model,
    choose_decision,
    gap_category,
    model_outputs,
)
from matscreen.tasks.models.folds import (
    calibration_part,
    check_training_data,
    fold_strata,
    label_classes,
    make_folds,
)
from matscreen.tasks.models.metrics import classification_metrics, error_metrics, json_safe
from matscreen.tasks.models.pipeline import (
    DEFAULT_PARAMS,
)
from matscreen.tasks.models.search import search_parameters
from matscreen.tasks.models.serialize import (
    estimator_to_dict,
    library_of,
)
from matscreen.tasks.models.surrogate import SurrogateModel
from matscreen.tasks.spec import ModelSpec
from matscreen.tasks.versions import installed_version


def train_surrogate(
    spec: ModelSpec,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    seed: int,
    groups: Sequence[str] | None = None,
    featurization: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> SurrogateModel:
    """Fit a surrogate on the training rows, with cross-validation and calibration.

    Parameters
    ----------
    spec
        The model's spec.
    labels
        Feature labels, one per column of the matrix.
    train
        ``(ids, features, labels)`` of the training rows.
    seed
        Random seed of folds, search and fits.
    groups
        Each training row's group (formula or chemical system) for grouped folds; None
        for random folds.
    featurization
        The featurization description the features came from (kept with the model so
        that prediction computes the same features).
    dask_address
        A Dask scheduler to run the search's fits on; None runs them here.

    Raises
    ------
    ModelError
        If the training data fail :func:`check_training_data` or a fit fails.
    """
    ids, x, y_raw = train
    x = np.asarray(x, dtype=np.float64)
    check_training_data(spec, ids, x, y_raw, labels, groups)
    y_values = np.asarray(y_raw, dtype=np.float64)
    y = (
        label_classes(spec, ids, y_values).astype(np.float64)
        if spec.kind == "classifier"
        else y_values
    )
    strata = fold_strata(spec, ids, y_values)
    folds = make_folds(len(y), spec.cv_folds, seed, strata, groups)

    search = None
    params = dict(spec.params)
    if spec.search != "none":
        search = search_parameters(spec, x, y, folds, seed, dask_address)
        params.update(search["best_params"])

    calibration: Calibration | None = None
    parts: dict[str, Any] = {"difficulty": None, "conditional": None}
    cv_metrics: dict[str, Any] = {}
    decision = None
    if spec.interval in ("cv", "none") or spec.search != "none":
        oof, gap = _out_of_fold(spec, params, seed, x, y, folds)
        if spec.kind == "two_stage_gap" and spec.gap_decision is None:
            assert oof[1] is not None and gap is not None
            metal_value = float(np.median(y[y <= spec.metal_threshold]))
            decision = choose_decision(y, oof[1], gap, metal_value)
            point = np.where(oof[1] >= decision, gap, metal_value)
            if spec.clip_min is not None:
                point = np.maximum(point, spec.clip_min)
            oof = (point, oof[1], gap_category(oof[1], decision))
        cv_metrics = _scores(spec, y, oof[0], oof[1])
        if decision is not None:
            cv_metrics["gap_decision"] = decision
        if spec.interval == "cv":
            calibration, parts = _interval_parts(spec, x, y, oof, gap, folds, "cv", seed)
    if spec.interval == "split":
        fit_rows, calibration_rows = calibration_part(len(y), seed, strata, groups)
        final = build_model(spec, params, seed, decision).fit(x[fit_rows], y[fit_rows])
        x_cal, y_cal = x[calibration_rows], y[calibration_rows]
        held = model_outputs(spec.kind, final, x_cal)
        held_gap = final.regressor_.predict(x_cal) if spec.kind == "two_stage_gap" else None
        # The difficulty models are cross-fitted inside the calibration part, which the
        # fitted model never saw.
        cal_groups = None if groups is None else [groups[i] for i in calibration_rows]
        if cal_groups is not None and len(set(cal_groups)) < spec.cv_folds:
            cal_groups = None
        cal_folds = make_folds(len(y_cal), spec.cv_folds, seed + 2, None, cal_groups)
        calibration, parts = _interval_parts(
            spec, x_cal, y_cal, held, held_gap, cal_folds, "split", seed
        )
        trained_ids = [ids[i] for i in fit_rows]
    else:
        final = build_model(spec, params, seed, decision).fit(x, y)
        trained_ids = list(ids)
    library = library_of(spec.algorithm)
    versions = {
        package: installed_version(package)
        # xgboost also fits the difficulty models of adaptive intervals.
        for package in dict.fromkeys((library, "numpy", "matscreen", "scikit-learn", "xgboost"))
    }
    if spec.algorithm != "xgboost":
        versions["skops"] = installed_version("skops")
    model = SurrogateModel(
        target=spec.target,
        kind=spec.kind,
        algorithm=spec.algorithm,
        params={**DEFAULT_PARAMS[spec.algorithm], **params},
        feature_labels=list(labels),
        train_ids=trained_ids,
        train_label_mean=float(np.mean(y_values)),
        clip_min=spec.clip_min,
        positive_at_most=spec.positive_at_most,
        calibration=calibration.to_dict() if calibration is not None else None,
        cv_metrics=json_safe(cv_metrics),
        search=json_safe(search),
        versions=versions,
        estimator=estimator_to_dict(final),
        featurization=featurization,
        difficulty=parts["difficulty"],
        conditional=parts["conditional"],
        domain=fit_domain(x, folds).to_dict(),
    )
    object.__setattr__(model, "_fitted", final)
    return model


def _out_of_fold(
    spec: ModelSpec,
    params: dict[str, Any],
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[tuple[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray | None]:
    """Predictions of every row by the fold model that did not see it.

    Returns
    -------
    ((point, probability or None, category or None), gap or None)
        The outputs as :func:`model_outputs` gives them, and for the two-stage model the
        regressor's gap of every row (for choosing the decision probability).
    """
    point = np.empty(len(y))
    probability = np.empty(len(y)) if spec.kind != "regressor" else None
    category = np.empty(len(y), dtype=object) if spec.kind == "two_stage_gap" else None
    gap = np.empty(len(y)) if spec.kind == "two_stage_gap" else None
    template = build_model(spec, params, seed)
    for fit_rows, held_rows in folds:
        fold_model = clone(template).fit(x[fit_rows], y[fit_rows])
        p, prob, cat = model_outputs(spec.kind, fold_model, x[held_rows])
        point[held_rows] = p
        if probability is not None and prob is not None:
            probability[held_rows] = prob
        if category is not None and cat is not None:
            category[held_rows] = cat
        if gap is not None:
            gap[held_rows] = fold_model.regressor_.predict(x[held_rows])
    if spec.clip_min is not None and spec.kind != "classifier":
        point = np.maximum(point, spec.clip_min)
    return (point, probability, category), gap


def _interval_parts(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    outputs: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    gap: np.ndarray | None,
    folds: list[tuple[np.ndarray, np.ndarray]],
    method: str,
    seed: int,
) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of the displayed intervals, and the difficulty and conditional parts.

    Parameters
    ----------
    x, y
        Features and labels of the calibration rows.
    outputs
        The model's (point, probability, category) for them, made without seeing them.
    gap
        Two-stage models: the regressor's gap for them, made without seeing them.
    folds
        Folds over the calibration rows, for cross-fitting the difficulty models.

    Returns
    -------
    (Calibration, {"difficulty": dict or None, "conditional": dict or None})
    """
    point, probability, category = outputs
    level = spec.interval_level
    if spec.kind == "classifier":
        # Score of a row: one minus the probability the model gave its true class.
        assert probability is not None
        truth = np.where(y == 1, probability, 1.0 - probability)
        calibration = calibrate(np.ones(len(y)), truth, method, level)
        return calibration, {"difficulty": None, "conditional": None}
    if spec.clip_min is not None:
        point = np.maximum(point, spec.clip_min)
    if spec.kind == "regressor":
        calibration, difficulty = _normalized(spec, x, y, point, folds, method, seed)
        return calibration, {"difficulty": difficulty, "conditional": None}
    # Two-stage: the displayed interval of the combined prediction keeps one width per
    # Mondrian category (predicted gap, doubtful metal, metal): within a category its
    # residual is a spike at zero plus the gaps or false gaps, not a scale family that a
    # difficulty could normalize. The per-row widths go to the regressor's conditional
    # interval, calibrated on the rows that truly have a gap.
    calibration = calibrate(y, point, method, level, category)
    assert gap is not None
    rows = np.flatnonzero(y > spec.metal_threshold)
    gap_point = gap[rows] if spec.clip_min is None else np.maximum(gap[rows], spec.clip_min)
    own, own_difficulty = _normalized(
        spec, x[rows], y[rows], gap_point, _restrict(folds, rows), method, seed
    )
    conditional = {"calibration": own.to_dict(), "difficulty": own_difficulty}
    return calibration, {"difficulty": None, "conditional": conditional}


def _normalized(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    point: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    method: str,
    seed: int,
) -> tuple[Calibration, dict[str, Any] | None]:
    """Scores of ``adaptive`` widths (normalized by a cross-fitted difficulty model), or
    of ``constant`` ones when asked or when the rows are too few for a difficulty model."""
    level = spec.interval_level
    usable = all(len(fit) >= 2 and len(held) for fit, held in folds)
    if spec.interval_width == "constant" or len(y) < MIN_DIFFICULTY_ROWS or not usable:
        return calibrate(y, point, method, level), None
    residual = y - point
    estimator, oof, selection = cross_fit_difficulty(x, residual, folds, seed)
    if estimator is None:  # a constant difficulty predicted |r| best: constant widths
        return calibrate(y, point, method, level), {"selection": selection}
    floor = floor_of(residual)
    calibration = calibrate(y, point, method, level, None, oof + floor)
    return calibration, {**difficulty_to_dict(estimator, floor), "selection": selection}


def _restrict(
    folds: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds over a subset of the rows, with indices into that subset."""
    position = np.full(max((len(f) + len(h) for f, h in folds), default=0), -1)
    position[rows] = np.arange(len(rows))
    restricted = []
    for fit_rows, held_rows in folds:
        fit, held = position[fit_rows], position[held_rows]
        restricted.append((fit[fit >= 0], held[held >= 0]))
    return [(fit, held) for fit, held in restricted if len(held)]


def _scores(
    spec: ModelSpec, y: np.ndarray, point: np.ndarray, probability: np.ndarray | None
) -> dict[str, Any]:
    if spec.kind == "classifier":
        assert probability is not None
        return classification_metrics(y, probability)
    scores: dict[str, Any] = error_metrics(y, point)
    if spec.kind == "two_stage_gap" and probability is not None:
        has_gap = (y > spec.metal_threshold).astype(int)
        scores["gap_classifier"] = classification_metrics(has_gap, probability)
    return scores
