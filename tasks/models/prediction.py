"""A stored surrogate applied to new rows, in blocks, with intervals and domain."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.conformal import Calibration, conformal_quantile, intervals
from matscreen.tasks.models.difficulty import (
    predict_difficulty,
)
from matscreen.tasks.models.estimators import gap_category, model_outputs
from matscreen.tasks.models.surrogate import Predictions, SurrogateModel

#: Rows predicted per block when computing intervals, to bound memory on large inputs.
_BLOCK = 20000


def check_feature_labels(model: SurrogateModel, labels: Sequence[str], where: str) -> None:
    """Refuse features whose labels differ from those the model was fitted on.

    Raises
    ------
    ModelError
        Naming ``where``, the count of each and the first missing and unexpected labels.
    """
    if list(labels) == list(model.feature_labels):
        return
    missing = [label for label in model.feature_labels if label not in set(labels)]
    extra = [label for label in labels if label not in set(model.feature_labels)]
    detail = (
        f"missing {missing[:3]}, unexpected {extra[:3]}"
        if missing or extra
        else "same labels in another order"
    )
    raise ModelError(
        f"{where}: the {model.target} model was fitted on {len(model.feature_labels)} features, "
        f"got {len(labels)} that do not match ({detail})"
    )


def predict_surrogate(
    model: SurrogateModel,
    ids: Sequence[str],
    x: np.ndarray,
    labels: Sequence[str],
    level: float | None = None,
) -> Predictions:
    """Point predictions and conformal intervals (at ``level``, default the model's).

    Rows are predicted in blocks, so memory stays bounded on large inputs; every block
    also gets the rows' difficulties (``adaptive`` intervals), the two-stage model's
    conditional gap and interval, and the distances to the training rows.

    Raises
    ------
    ModelError
        If the feature labels differ from the model's, the matrix is misshapen, or a level
        is asked of a model without calibration.
    """
    check_feature_labels(model, labels, f"{model.target} prediction")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(model.feature_labels) or x.shape[0] != len(ids):
        raise ModelError(
            f"{model.target}: expected a ({len(ids)}, {len(model.feature_labels)}) feature "
            f"matrix, got {x.shape}"
        )
    if model.calibration is None and level is not None:
        raise ModelError(f"{model.target}: the model was trained without intervals")
    blocks = [_predict_block(model, x[i : i + _BLOCK]) for i in range(0, len(x), _BLOCK)]
    parts = {
        name: None
        if not blocks or blocks[0][name] is None
        else np.concatenate([b[name] for b in blocks])
        for name in _BLOCK_PARTS
    }
    if not blocks:
        parts = _empty_parts(model)
    point, probability = parts["point"], parts["probability"]
    assert point is not None
    used_level = None
    lower, upper = point.copy(), point.copy()
    if model.calibration is not None:
        calibration = Calibration(**model.calibration)
        used_level = calibration.level if level is None else level
        if model.is_classifier:
            assert probability is not None
            lower, upper = _prediction_sets(calibration, probability, point, used_level)
        else:
            lower, upper = _clipped(
                model,
                intervals(calibration, point, used_level, parts["category"], parts["difficulty"]),
            )
    gap_lower = gap_upper = None
    gap = parts["gap"]
    if gap is not None and model.conditional is not None and used_level is not None:
        conditional = Calibration(**model.conditional["calibration"])
        gap_lower, gap_upper = _clipped(
            model, intervals(conditional, gap, used_level, None, parts["gap_difficulty"])
        )
    distance = parts["distance"]
    domain = model.applicability_domain()
    return Predictions(
        list(ids),
        point,
        lower,
        upper,
        probability,
        used_level,
        gap_pred=gap,
        gap_lower=gap_lower,
        gap_upper=gap_upper,
        metal_value=model.fitted().metal_value_ if model.kind == "two_stage_gap" else None,
        domain_distance=distance,
        in_domain=None if distance is None or domain is None else distance <= domain.threshold,
    )


#: What :func:`_predict_block` gives for every row (None where the model has no such part).
_BLOCK_PARTS = (
    "point",
    "probability",
    "category",
    "gap",
    "difficulty",
    "gap_difficulty",
    "distance",
)


def _predict_block(model: SurrogateModel, x: np.ndarray) -> dict[str, np.ndarray | None]:
    """Every per-row output of the model for one block of rows."""
    estimator = model.fitted()
    parts: dict[str, np.ndarray | None] = dict.fromkeys(_BLOCK_PARTS)
    if model.kind == "two_stage_gap":
        probability = estimator.gap_probability(x)
        gap = np.asarray(estimator.regressor_.predict(x), dtype=np.float64)
        parts["point"] = np.asarray(estimator.combine(probability, gap), dtype=np.float64)
        parts["category"] = gap_category(probability, estimator.decision)
        parts["probability"] = probability
        parts["gap"] = gap if model.clip_min is None else np.maximum(gap, model.clip_min)
    else:
        parts["point"], parts["probability"], _ = model_outputs(model.kind, estimator, x)
    if model.kind != "classifier" and model.clip_min is not None:
        parts["point"] = np.maximum(cast(np.ndarray, parts["point"]), model.clip_min)
    for name, fitted in (
        ("difficulty", model.difficulty_model()),
        ("gap_difficulty", model.conditional_difficulty_model()),
    ):
        if fitted is not None:
            parts[name] = predict_difficulty(fitted[0], x) + fitted[1]
    domain = model.applicability_domain()
    if domain is not None:
        parts["distance"] = domain.distance(x)
    return parts


def _empty_parts(model: SurrogateModel) -> dict[str, np.ndarray | None]:
    """The parts of a prediction of no rows."""
    present = {
        "point": True,
        "probability": model.kind != "regressor",
        "category": model.kind == "two_stage_gap",
        "gap": model.kind == "two_stage_gap",
        "difficulty": model.difficulty_model() is not None,
        "gap_difficulty": model.conditional_difficulty_model() is not None,
        "distance": model.domain is not None,
    }
    return {name: np.empty(0) if there else None for name, there in present.items()}


def _clipped(
    model: SurrogateModel, bounds: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds raised to the model's ``clip_min``, if it has one."""
    lower, upper = bounds
    if model.clip_min is None:
        return lower, upper
    return np.maximum(lower, model.clip_min), np.maximum(upper, model.clip_min)


def _prediction_sets(
    calibration: Calibration, probability: np.ndarray, point: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest class of each conformal prediction set ({0}, {1} or {0, 1})."""
    scores = np.concatenate([np.asarray(s) for s in calibration.scores.values()])
    threshold = conformal_quantile(scores, level)
    has_one = 1.0 - probability <= threshold
    has_zero = probability <= threshold
    # An empty set (both classes improbable beyond the threshold) falls back to the point.
    lower = np.where(has_zero, 0.0, np.where(has_one, 1.0, point))
    upper = np.where(has_one, 1.0, np.where(has_zero, 0.0, point))
    return lower, upper
