"""The screen: predict every candidate, add its hull stability, and rank the pool.

The same steps rank two pools of a campaign: the held-out validation records (whose
labels tell how far the ranking can be trusted) and the candidates (the structures the
campaign is for). Each step takes and returns plain data, so it runs as a Prefect task on
any worker and can be checked without one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from matscreen.tasks.models.evaluation import FittedSurrogate, prediction_record
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.records import PredictionRecord
from matscreen.tasks.models.surrogate import SurrogateModel
from matscreen.tasks.rank import add_intervals, candidate_frame
from matscreen.tasks.sources.records import RecordFailure, SourceSnapshot, StructureRecord
from matscreen.tasks.spec import HULL_PROPERTY

#: Stage name of a candidate that could not be placed against the hull.
HULL_STAGE = "hull"


def predict_pool(
    model: SurrogateModel,
    labels: list[str],
    rows: tuple[list[str], np.ndarray, Sequence[float | None]],
    n_train: int,
) -> PredictionRecord:
    """Predict every row of a pool with a trained model.

    Parameters
    ----------
    model
        The trained surrogate.
    labels
        Feature labels of the matrix's columns.
    rows
        ``(ids, features, labels or None)`` of the pool's rows.
    n_train
        Training rows of the model (kept with the record).

    Raises
    ------
    ModelError
        If the features do not match the model's.
    """
    ids, x, y_true = rows
    predicted = predict_surrogate(model, ids, x, labels)
    return prediction_record(model, predicted, y_true, n_train)


@dataclass(frozen=True)
class PoolTable:
    """A pool's candidate table (ids, formulas, predictions, uncertainty) to rank.

    ``levels`` is the coverage level of each property's interval columns; ``failures``
    the candidates left out of the table with their reasons (e.g. no hull reference).
    """

    frame: pd.DataFrame
    levels: dict[str, float]
    failures: list[RecordFailure] = field(default_factory=list)


def pool_table(
    records: Mapping[str, StructureRecord],
    predictions: Mapping[str, PredictionRecord],
    trained_on: set[str] | frozenset[str] = frozenset(),
) -> PoolTable:
    """The table of a pool's candidates: one row per id every model predicted.

    Columns: ``id``, ``formula``, ``source``, ``in_training`` (the models learned from
    this record's label, as for a ``both`` source), ``pred_<target>`` and the uncertainty
    columns of :func:`~matscreen.tasks.rank.add_intervals`, and ``reported_<target>``
    (the source's value, None where it has none).
    """
    first = next(iter(predictions.values()))
    ids = list(first.ids)
    for target, record in predictions.items():
        if list(record.ids) != ids:
            raise ValueError(f"pool table: the {target} predictions cover other rows")
    frame = candidate_frame(
        ids,
        [records[i].formula for i in ids],
        {t: list(p.y_pred) for t, p in predictions.items()},
    )
    frame.insert(2, "source", [records[i].source for i in ids])
    frame.insert(3, "in_training", [i in trained_on for i in ids])
    levels = add_intervals(frame, dict(predictions))
    for target, record in predictions.items():
        frame[f"reported_{target}"] = pd.array(
            [np.nan if v is None else v for v in record.y_true], dtype="Float64"
        )
    return PoolTable(frame, levels)


def with_hull(
    table: PoolTable,
    hull: pd.DataFrame,
    failures: Mapping[str, str],
    records: Mapping[str, Any],
    required: bool,
    level: float | None,
) -> PoolTable:
    """Add the hull-stability columns to a pool's table.

    Parameters
    ----------
    table
        The pool's table.
    hull
        One row per candidate placed against the hull: ``id``,
        ``pred_/lower_/upper_energy_above_hull``, ``hull_energy_per_atom``,
        ``competing_phases``.
    failures
        ``{id: reason}`` of the candidates that could not be placed.
    records
        Each candidate's record, or anything with its ``source``, ``source_id`` and
        ``row`` (what a failure names).
    required
        Whether a criterion names the hull distance: a candidate without one then cannot
        be ranked and leaves the table as a failure (stage ``hull``); otherwise it stays,
        its hull columns empty.
    level
        Coverage level of the hull-distance interval (the formation-energy model's).
    """
    frame = table.frame.merge(hull, on="id", how="left")
    lost: list[RecordFailure] = list(table.failures)
    if required and failures:
        frame = frame[~frame["id"].isin(set(failures))].reset_index(drop=True)
        for record_id, reason in sorted(failures.items()):
            record = records[record_id]
            lost.append(
                RecordFailure(record.source, record.source_id, record.row, HULL_STAGE, reason)
            )
    levels = dict(table.levels)
    if level is not None and f"lower_{HULL_PROPERTY}" in frame.columns:
        levels[HULL_PROPERTY] = level
    return PoolTable(frame, levels, lost)


def reported_values(
    frame: pd.DataFrame, properties: Sequence[str]
) -> dict[str, dict[str, float | None]]:
    """``{property: {id: reported value or None}}`` from a pool table's ``reported_`` columns."""
    out: dict[str, dict[str, float | None]] = {}
    for prop in properties:
        column = f"reported_{prop}"
        values = frame[column] if column in frame.columns else pd.Series([None] * len(frame))
        out[prop] = {
            i: (None if pd.isna(v) else float(v)) for i, v in zip(frame["id"], values, strict=True)
        }
    return out


def atoms_per_cell(record: StructureRecord) -> int:
    """Number of sites in a record's structure."""
    return len(record.structure["sites"])


def training_phases(
    records: Mapping[str, StructureRecord],
    energies: Mapping[str, float | None],
    train_ids: Sequence[str],
    per: str,
) -> list[tuple[str, float, str]]:
    """The labelled training records as known phases: ``(formula, energy per atom, id)``.

    ``per`` says whether the labels are per atom or per cell of the record's structure.
    """
    phases = []
    for record_id in train_ids:
        value = energies.get(record_id)
        if value is None or not np.isfinite(value):
            continue
        record = records[record_id]
        scale = atoms_per_cell(record) if per == "cell" else 1
        phases.append((record.formula, float(value) / scale, record_id))
    return phases


def hull_inputs(
    frame: pd.DataFrame,
    target: str,
    records: Mapping[str, StructureRecord],
    per: str,
    reported: bool = False,
) -> tuple[list[tuple[str, str, float, float, float]], dict[str, int] | None]:
    """What :func:`~matscreen.tasks.models.stability.hull_stability` needs of a pool table.

    Returns ``(id, formula, formation energy, lower, upper)`` per row — the prediction and
    its interval, or with ``reported`` the reported value (rows without one are left
    out) — and, for energies per cell, each row's number of atoms.
    """
    ids = list(frame["id"])
    if reported:
        column = f"reported_{target}"
        if column not in frame.columns:
            return [], None
        values = frame[column].astype("float64").to_numpy(na_value=np.nan)
        rows = [
            (i, records[i].formula, float(v), float(v), float(v))
            for i, v in zip(ids, values, strict=True)
            if np.isfinite(v)
        ]
    else:
        pred = frame[f"pred_{target}"].to_numpy(dtype=float)
        lower = frame.get(f"lower_{target}", frame[f"pred_{target}"]).to_numpy(dtype=float)
        upper = frame.get(f"upper_{target}", frame[f"pred_{target}"]).to_numpy(dtype=float)
        rows = [
            (i, records[i].formula, float(p), float(lo), float(hi))
            for i, p, lo, hi in zip(ids, pred, lower, upper, strict=True)
        ]
    atoms = {row[0]: atoms_per_cell(records[row[0]]) for row in rows} if per == "cell" else None
    return rows, atoms


def chemical_system(formula: str) -> str:
    """The chemical system of a formula (``O-Sr-Ti``)."""
    from pymatgen.core import Composition

    return Composition(formula).chemical_system


def expected_hits(ranked: pd.DataFrame) -> float | None:
    """Expected number of candidates meeting every criterion (the sum of P(success)), or
    None for a ranking without probabilities."""
    if "p_success" not in ranked.columns:
        return None
    return float(ranked["p_success"].sum())


@dataclass(frozen=True)
class TrainedModels:
    """What predicting candidates needs of the training step.

    Attributes
    ----------
    fitted
        The fitted surrogate of each target.
    model_ids
        The catalog id of each target's model.
    train_ids
        Ids of the records the models learned from (a ``both`` candidate among them is
        flagged ``in_training``).
    """

    fitted: dict[str, FittedSurrogate]
    model_ids: dict[str, str]
    train_ids: frozenset[str]


@dataclass
class ScreenedCandidates:
    """Every candidate of a campaign, predicted and ready to rank.

    Attributes
    ----------
    table
        One row per candidate (the pool table, hull columns included); ``failures`` holds
        the candidates that could not be placed against the hull when that is required.
    prediction_ids
        Catalog ids of every prediction set (one per chunk and model).
    snapshots, snapshot_ids
        Snapshot and catalog id of each streamed source.
    failures
        Records of the streamed sources left out before prediction: failed rows, known
        training records, structures that failed to featurize.
    counts
        ``records``, ``duplicates``, ``ingest_failures``, ``featurized``,
        ``feature_failures``, ``known_candidates`` (repeats of a training record
        included), ``excluded`` (known, not repeats) and ``candidate_pool`` of the
        streamed sources; ``predictions_reused``: candidates whose predictions by every
        model were read back from an earlier run's records instead of made again;
        ``records_resumed``: records and failed rows of the chunks a killed run had
        finished, taken whole from what it kept.
    chunks
        Chunks screened.
    """

    table: PoolTable
    prediction_ids: list[str] = field(default_factory=list)
    snapshots: list[SourceSnapshot] = field(default_factory=list)
    snapshot_ids: list[str] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    chunks: int = 0
