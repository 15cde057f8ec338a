"""Predictions of a model for a set of records, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

#: Fewest labelled rows a model is fitted on.
MIN_TRAINING_ROWS = 10


@dataclass(frozen=True)
class PredictionRecord:
    """Predictions of one model for a set of records, with the labels where known.

    ``baseline`` is the dummy model's prediction: the mean training label. Models with
    calibrated uncertainty also give each row's interval (``lower``, ``upper`` at
    ``level``) and, for classifiers and two-stage models, a probability.

    A two-stage gap model's record also holds its hurdle distribution: ``probability``
    of a gap, the gap if there is one (``gap_pred``) with its interval at ``level``
    (``gap_lower``, ``gap_upper``), and the value of a row without a gap
    (``metal_value``). ``domain_distance`` is each row's distance to the training rows
    and ``in_domain`` whether it lies within the model's applicability domain.
    """

    target: str
    ids: list[str]
    y_true: list[float | None]
    y_pred: list[float]
    baseline: float
    n_train: int
    lower: list[float] | None = None
    upper: list[float] | None = None
    probability: list[float] | None = None
    level: float | None = None
    gap_pred: list[float] | None = None
    gap_lower: list[float] | None = None
    gap_upper: list[float] | None = None
    metal_value: float | None = None
    domain_distance: list[float] | None = None
    in_domain: list[bool] | None = None
