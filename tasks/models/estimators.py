"""The estimator a model spec asks for, what it outputs, and the two-stage decision."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from matscreen.tasks.models.pipeline import (
    TwoStageGapRegressor,
    build_pipeline,
)
from matscreen.tasks.spec import ModelSpec


def _stage_params(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The parameters of one stage: plain names, then ``stage__name`` overrides."""
    plain = {k: v for k, v in params.items() if "__" not in k}
    prefix = f"{stage}__"
    return {**plain, **{k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}}


def build_model(
    spec: ModelSpec, params: dict[str, Any], seed: int, decision: float | None = None
) -> BaseEstimator:
    """The unfitted estimator a spec describes, with ``params`` (spec names).

    ``decision`` is the two-stage model's decision probability (default: the spec's, else
    one half).
    """

    def pipeline(classify: bool, stage_params: dict[str, Any]) -> BaseEstimator:
        return build_pipeline(
            spec.algorithm, classify, stage_params, seed, spec.scale, spec.select_features
        )

    if spec.kind == "two_stage_gap":
        return TwoStageGapRegressor(
            classifier=pipeline(True, _stage_params(params, "classifier")),
            regressor=pipeline(False, _stage_params(params, "regressor")),
            threshold=spec.metal_threshold,
            decision=decision if decision is not None else (spec.gap_decision or 0.5),
        )
    return pipeline(spec.kind == "classifier", _stage_params(params, "model"))


def model_outputs(
    kind: str, estimator: BaseEstimator, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(point prediction, probability or None, Mondrian category or None)."""
    if kind == "classifier":
        probability = estimator.predict_proba(x)[:, 1]
        return (probability >= 0.5).astype(np.float64), probability, None
    if kind == "two_stage_gap":
        probability = estimator.gap_probability(x)
        point = estimator.combine(probability, estimator.regressor_.predict(x))
        return point, probability, gap_category(probability, estimator.decision)
    return np.asarray(estimator.predict(x), dtype=np.float64), None, None


def gap_category(probability: np.ndarray, decision: float = 0.5) -> np.ndarray:
    """Mondrian category of a two-stage prediction by its probability of a gap.

    Rows predicted to have a gap (probability at least ``decision``) are calibrated on
    their own; rows predicted metallic are split into confident (probability below a fifth
    of ``decision``) and doubtful ones, so that a doubtful metal's interval can reach up to
    the gaps its look-alikes turned out to have.
    """
    doubtful = np.where(probability >= decision / 5, "metal?", "metal")
    return np.where(probability >= decision, "gap", doubtful)


#: Decision probabilities tried when the two-stage model's is chosen by cross-validation.
DECISION_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def choose_decision(
    y: np.ndarray, probability: np.ndarray, gap: np.ndarray, metal_value: float
) -> float:
    """The decision probability with the smallest out-of-fold absolute error.

    Ties go to the value nearest one half (the optimum for calibrated probabilities).
    """
    errors = [
        (float(np.mean(np.abs(np.where(probability >= t, gap, metal_value) - y))), abs(t - 0.5), t)
        for t in DECISION_GRID
    ]
    return min(errors)[2]
