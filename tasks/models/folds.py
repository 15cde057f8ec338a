"""Training labels checked, and the cross-validation folds every later step reuses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.records import MIN_TRAINING_ROWS
from matscreen.tasks.spec import ModelSpec

#: Share of the training rows held back for calibration with ``interval: split``.
SPLIT_CALIBRATION_FRACTION = 0.2


def label_classes(spec: ModelSpec, ids: Sequence[str], y: np.ndarray) -> np.ndarray:
    """0/1 classes of a classifier's labels (label <= ``positive_at_most``, or the labels)."""
    if spec.positive_at_most is not None:
        return (y <= spec.positive_at_most).astype(int)
    bad = [ids[int(i)] for i in np.flatnonzero((y != 0) & (y != 1))]
    if bad:
        raise ModelError(
            f"{spec.target}: a classifier needs labels 0 or 1 (or positive_at_most); "
            f"{len(bad)} rows hold other values, e.g. {bad[:5]}"
        )
    return y.astype(int)


def check_training_data(
    spec: ModelSpec,
    ids: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str] | None = None,
) -> None:
    """Refuse training data that cannot give an honest fit, before anything is fitted.

    Raises
    ------
    ModelError
        If the matrix is misshapen; a label is missing, not a number or infinite (naming
        rows); there are fewer rows (or groups) than the folds need; or a class (metal /
        non-metal for the two-stage model) has fewer rows than folds.
    """
    target, folds = spec.target, spec.cv_folds
    if x.ndim != 2 or x.shape[1] != len(labels):
        raise ModelError(
            f"{target}: feature matrix has shape {x.shape}, expected (n, {len(labels)})"
        )
    if len(y) != x.shape[0] or len(ids) != len(y):
        raise ModelError(f"{target}: {len(y)} labels for {x.shape[0]} rows and {len(ids)} ids")
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        bad = [i for i, v in zip(ids, y, strict=True) if not _is_number(v)]
        raise ModelError(f"{target}: labels are not numbers, e.g. {bad[:5]}") from exc
    bad = [ids[int(i)] for i in np.flatnonzero(~np.isfinite(values))]
    if bad:
        raise ModelError(
            f"{target}: {len(bad)} training labels are NaN or infinite, e.g. {bad[:5]}"
        )
    needed = max(MIN_TRAINING_ROWS, 2 * folds)
    if spec.interval == "split":
        needed = max(needed, math.ceil(2 * folds / (1 - SPLIT_CALIBRATION_FRACTION)))
    if len(values) < needed:
        raise ModelError(
            f"{target}: {len(values)} training rows with labels; at least {needed} needed for "
            f"{folds}-fold cross-validation"
        )
    if groups is not None and len(set(groups)) < folds:
        raise ModelError(
            f"{target}: {len(set(groups))} groups in the training rows; {folds}-fold grouped "
            "cross-validation needs at least as many groups as folds"
        )
    strata = fold_strata(spec, ids, values)
    if strata is not None:
        names = ("negative", "positive") if spec.kind == "classifier" else ("metal", "gap")
        counts = {names[c]: int(np.sum(strata == c)) for c in (0, 1)}
        if min(counts.values()) < folds:
            raise ModelError(
                f"{target}: {counts} training rows by class; {folds}-fold cross-validation "
                f"needs at least {folds} of each"
            )


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def fold_strata(spec: ModelSpec, ids: Sequence[str], y: np.ndarray) -> np.ndarray | None:
    if spec.kind == "classifier":
        return label_classes(spec, ids, y)
    if spec.kind == "two_stage_gap":
        return (y > spec.metal_threshold).astype(int)
    return None


def make_folds(
    n_rows: int,
    folds: int,
    seed: int,
    strata: np.ndarray | None = None,
    groups: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, validation) index pairs over the training rows.

    Grouped when ``groups`` are given (no group on both sides of a fold), stratified by
    ``strata`` when given, shuffled with ``seed``.
    """
    index = np.zeros((n_rows, 1))
    if groups is not None:
        codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
        if strata is not None:
            splitter: Any = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            return list(splitter.split(index, strata, codes))
        return list(GroupKFold(folds, shuffle=True, random_state=seed).split(index, None, codes))
    if strata is not None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return list(splitter.split(index, strata))
    return list(KFold(folds, shuffle=True, random_state=seed).split(index))


def calibration_part(
    n_rows: int, seed: int, strata: np.ndarray | None, groups: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit, rows to calibrate on) for split-conformal intervals."""
    parts = round(1 / SPLIT_CALIBRATION_FRACTION)
    fit_rows, calibration_rows = make_folds(n_rows, parts, seed + 1, strata, groups)[0]
    return fit_rows, calibration_rows
