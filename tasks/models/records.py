"""Predictions of a model for a set of records, as plain data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

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


def kept_label(value: float | None) -> float | None:
    """A label as a record keeps it: the value, or None where there is no finite one."""
    return None if value is None or not math.isfinite(value) else float(value)


#: The fields of a :class:`PredictionRecord` that are one number for all its rows.
SCALAR_FIELDS = ("baseline", "n_train", "level", "metal_value")


def record_scalars(record: PredictionRecord) -> dict[str, float | int | None]:
    """The numbers of a record that are not per row (kept with its stored per-row table)."""
    return {name: getattr(record, name) for name in SCALAR_FIELDS}


def record_from_table(
    target: str, table: pd.DataFrame, scalars: Mapping[str, float | int | None]
) -> PredictionRecord:
    """The record whose :func:`~matscreen.tasks.tables.per_row_frame` is ``table`` and
    whose :func:`record_scalars` are ``scalars`` (NaN labels become None again, 0/1 domain
    flags booleans)."""

    def column(name: str) -> list[float] | None:
        return table[name].tolist() if name in table.columns else None

    in_domain = column("in_domain")
    return PredictionRecord(
        target=target,
        ids=[str(i) for i in table.index],
        y_true=[kept_label(v) for v in table["y_true"].tolist()],
        y_pred=table["y_pred"].tolist(),
        baseline=float(scalars["baseline"]),  # type: ignore[arg-type]
        n_train=int(scalars["n_train"]),  # type: ignore[arg-type]
        lower=column("lower"),
        upper=column("upper"),
        probability=column("probability"),
        level=scalars.get("level"),
        gap_pred=column("gap_pred"),
        gap_lower=column("gap_lower"),
        gap_upper=column("gap_upper"),
        metal_value=scalars.get("metal_value"),
        domain_distance=column("domain_distance"),
        in_domain=None if in_domain is None else [v == 1.0 for v in in_domain],
    )
