"""Featurize a batch of structures; one failing structure becomes an error row."""

from __future__ import annotations

import functools
import os
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from matscreen.tasks.errors import RecordError
from matscreen.tasks.featurize.arrays import featurize_cells, supports
from matscreen.tasks.featurize.isolated import child_featurizer
from matscreen.tasks.featurize.presets import build_featurizers, feature_labels
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame

if TYPE_CHECKING:  # pymatgen and matminer load only where structures are featurized
    from pymatgen.core import Structure

# spglib's C library prints a line for every cell whose exact symmetry search falls back to
# a looser tolerance, which distorted perovskite cells do by the hundred; the featurizer
# still gets its answer. Users who want the lines can set SPGLIB_WARNING themselves.
os.environ.setdefault("SPGLIB_WARNING", "OFF")

#: Column of a cached feature row that holds the error message of a failed structure.
ERROR_COLUMN = "_error"


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


def featurize_one(structure: Structure, config: dict[str, Any]) -> list[float]:
    """Compute every feature of a featurization for one structure, in this process.

    Raises
    ------
    RecordError
        If a featurizer fails on this structure; the message names the featurizer.
    """
    row: list[float] = []
    composition = structure.composition
    for kind, featurizer in build_featurizers(config):
        # matminer featurizers raise assorted exception types on unusual structures; each
        # becomes this structure's error row, never a failed batch. Running out of memory
        # is not the structure's fault here: it propagates (in a featurizer child process,
        # the child dies and that structure alone is reported).
        try:
            values = featurizer.featurize(composition if kind == "composition" else structure)
            row.extend(_as_number(v) for v in values)
        except MemoryError:
            raise
        except Exception as exc:
            raise RecordError(
                f"{type(featurizer).__name__} failed: {type(exc).__name__}: {exc}"
            ) from exc
    return row


def _in_process(structure_dict: dict[str, Any], config: dict[str, Any]) -> list[float]:
    from pymatgen.core import Structure

    try:
        structure = Structure.from_dict(structure_dict)
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordError(f"not a structure: {exc}") from exc
    return featurize_one(structure, config)


def featurize_batch(
    items: list[tuple[str, dict[str, Any]]],
    config: dict[str, Any],
    time_limit_s: float | None = None,
    arrays: bool = True,
    memory_mb: int = 0,
) -> FeatureBatch:
    """Featurize a batch of structures.

    Parameters
    ----------
    items
        ``(key, Structure.as_dict())`` pairs; the key names the row (a record id or a
        structure hash).
    config
        The featurization description (:func:`featurization_config`).
    time_limit_s
        Seconds one structure may take on the row-by-row path; those structures then run
        in a child process that is killed on overrun. None runs them in this process
        without a limit.
    arrays
        Compute the rows the array path can take (:mod:`~matscreen.tasks.featurize.arrays`,
        same values) for the whole batch at once; False featurizes every row on its own.
    memory_mb
        Heap limit in MiB of the child process of the ``time_limit_s`` path (0: none); a
        structure that needs more gets an error row. Flows pass the run's
        ``MATSCREEN_FEATURIZER_MEMORY_MB``.

    Returns
    -------
    FeatureBatch
        One row per structure that featurized, in the order of ``items``; every other key
        maps to its error message in ``failures``.
    """
    computed: dict[int, np.ndarray] = {}
    if arrays and items and supports(config):
        positions, values = featurize_cells([d for _, d in items], config)
        computed = dict(zip(positions, values, strict=True))
    if time_limit_s is not None and len(computed) < len(items):
        child = child_featurizer(config, time_limit_s, memory_mb)
        labels = child.labels()
        compute = child.featurize
    else:
        labels = feature_labels(config)
        compute = functools.partial(_in_process, config=config)
    ids: list[str] = []
    rows: list[Any] = []
    failures: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for position, (key, structure_dict) in enumerate(items):
            row: Sequence[float] | np.ndarray
            if position in computed:
                row = computed[position]
            else:
                try:
                    row = compute(structure_dict)
                except RecordError as exc:
                    failures[key] = str(exc)
                    continue
            ids.append(key)
            rows.append(row)
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(labels))
    return FeatureBatch(ids=ids, labels=labels, values=values, failures=failures)


def pack_items(items: list[tuple[str, dict[str, Any]]]) -> bytes:
    """A batch's items as one opaque blob.

    Prefect walks every task argument looking for futures; handed as one blob, a batch of
    structure dicts costs the driver one object to walk instead of tens of thousands.
    """
    return pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)


def featurize_packed(
    packed: bytes,
    config: dict[str, Any],
    time_limit_s: float | None = None,
    memory_mb: int = 0,
) -> FeatureBatch:
    """:func:`featurize_batch` on items packed by :func:`pack_items`."""
    return featurize_batch(pickle.loads(packed), config, time_limit_s, memory_mb=memory_mb)


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


def batch_frame(batch: FeatureBatch) -> pd.DataFrame:
    """The featurized rows of a batch as a table indexed by key."""
    return pd.DataFrame(batch.values, index=pd.Index(batch.ids, name="key"), columns=batch.labels)


def table_for_records(keys: dict[str, str], rows: pd.DataFrame) -> FeatureTable:
    """Build a campaign's feature table from rows keyed by structure hash.

    Parameters
    ----------
    keys
        Record id -> structure hash.
    rows
        Feature rows by structure hash, with the error message (or None) in ``_error``.
    """
    if ERROR_COLUMN not in rows.columns:  # nothing stored at all (no records)
        rows = rows.assign(**{ERROR_COLUMN: pd.Series(dtype=object)})
    failed = rows[ERROR_COLUMN].notna()
    good = rows.loc[~failed].drop(columns=[ERROR_COLUMN])
    messages = rows.loc[failed, ERROR_COLUMN].to_dict()
    ids = sorted(i for i, key in keys.items() if key in good.index)
    frame = good.loc[[keys[i] for i in ids]].set_axis(pd.Index(ids, name="id"))
    failures = {i: messages[key] for i, key in sorted(keys.items()) if key in messages}
    return FeatureTable(frame=frame, failures=failures)
