"""Featurize a batch of structures; one failing structure becomes an error row."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError
from matscreen.tasks.featurize.presets import build_featurizers, feature_labels
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame

# spglib's C library prints a line for every cell whose exact symmetry search falls back to
# a looser tolerance, which distorted perovskite cells do by the hundred; the featurizer
# still gets its answer. Users who want the lines can set SPGLIB_WARNING themselves.
os.environ.setdefault("SPGLIB_WARNING", "OFF")


@dataclass(frozen=True)
class FeatureBatch:
    """Features of one batch: a row per featurized structure, plus the failures."""

    ids: list[str]
    labels: list[str]
    values: np.ndarray
    failures: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureTable:
    """Features of a whole campaign, indexed by record id.

    NaN policy: a featurizer that has no value for a structure (e.g. an element without
    Magpie data) leaves NaN in that cell; the models treat NaN as missing. A structure on
    which a featurizer raises gets no row at all and is listed in ``failures``.
    """

    frame: pd.DataFrame
    failures: dict[str, str]

    def to_parquet_bytes(self) -> bytes:
        """Serialize the feature matrix as Parquet (id index, one column per feature)."""
        return frame_to_parquet(self.frame)

    @classmethod
    def from_parquet_bytes(cls, data: bytes) -> FeatureTable:
        """Read a feature matrix written by :meth:`to_parquet_bytes`."""
        return cls(frame=parquet_to_frame(data), failures={})


def _as_number(value: Any) -> float:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if value is None:
        return float("nan")
    return float(value)


def featurize_one(structure: Structure, preset: str) -> list[float]:
    """Compute every feature of ``preset`` for one structure.

    Raises
    ------
    RecordError
        If a featurizer fails on this structure; the message names the featurizer.
    """
    row: list[float] = []
    composition = structure.composition
    for kind, featurizer in build_featurizers(preset):
        # matminer featurizers raise assorted exception types on unusual structures; each
        # becomes this structure's error row, never a failed batch.
        try:
            values = featurizer.featurize(composition if kind == "composition" else structure)
            row.extend(_as_number(v) for v in values)
        except Exception as exc:
            raise RecordError(
                f"{type(featurizer).__name__} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return row


def featurize_batch(items: list[tuple[str, dict[str, Any]]], preset: str) -> FeatureBatch:
    """Featurize a batch of structures with a preset.

    Parameters
    ----------
    items
        ``(record id, Structure.as_dict())`` pairs.
    preset
        Name of the featurizer preset.

    Returns
    -------
    FeatureBatch
        One row per structure that featurized; every other structure's id maps to the
        error message in ``failures``.
    """
    labels = feature_labels(preset)
    ids: list[str] = []
    rows: list[list[float]] = []
    failures: dict[str, str] = {}
    for record_id, structure_dict in items:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                structure = Structure.from_dict(structure_dict)
            except (KeyError, ValueError, TypeError) as exc:
                failures[record_id] = f"{record_id}: not a structure: {exc}"
                continue
            try:
                row = featurize_one(structure, preset)
            except RecordError as exc:
                failures[record_id] = f"{record_id}: {exc}"
                continue
        ids.append(record_id)
        rows.append(row)
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(labels))
    return FeatureBatch(ids=ids, labels=labels, values=values, failures=failures)


def join_batches(batches: list[FeatureBatch]) -> FeatureTable:
    """Join batches into one feature table, rows sorted by record id."""
    labels = batches[0].labels if batches else []
    frames = [
        pd.DataFrame(b.values, index=pd.Index(b.ids, name="id"), columns=labels) for b in batches
    ]
    frame = pd.concat(frames) if frames else pd.DataFrame(columns=labels)
    failures: dict[str, str] = {}
    for batch in batches:
        failures.update(batch.failures)
    return FeatureTable(frame=frame.sort_index(), failures=failures)
