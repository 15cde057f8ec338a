"""Assemble model inputs from the feature table, the records' labels and the split."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pandas as pd

from matscreen.tasks.featurize.batch import FeatureTable
from matscreen.tasks.sources.records import RecordFailure, StructureRecord


def labels_of(records: list[StructureRecord], target: str) -> dict[str, float | None]:
    """Return each record's reported value of ``target`` (None where it has none)."""
    return {record.id: record.properties.get(target) for record in records}


def _has_label(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def training_arrays(
    features: pd.DataFrame, labels: dict[str, float | None], ids: list[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Rows of ``ids`` that have both features and a finite label, as arrays.

    Returns
    -------
    (ids, X, y)
        Record ids kept (in the order given), their feature matrix and labels.
    """
    kept = [i for i in ids if i in features.index and _has_label(labels.get(i))]
    x = features.loc[kept].to_numpy(dtype=np.float64)
    y = np.array([labels[i] for i in kept], dtype=np.float64)
    return kept, x, y


def candidate_arrays(
    features: pd.DataFrame, labels: dict[str, float | None], ids: list[str]
) -> tuple[list[str], np.ndarray, list[float | None]]:
    """Rows of ``ids`` that have features (labels may be missing), as arrays.

    Returns
    -------
    (ids, X, labels)
        Record ids kept (in the order given), their feature matrix and labels or None.
    """
    kept = [i for i in ids if i in features.index]
    x = features.loc[kept].to_numpy(dtype=np.float64)
    return kept, x, [labels.get(i) if _has_label(labels.get(i)) else None for i in kept]


def unique_structures(
    records: list[StructureRecord], keys: dict[str, str], skip: set[str]
) -> list[tuple[str, dict]]:
    """One ``(structure hash, structure dict)`` per distinct structure not in ``skip``."""
    todo: dict[str, dict] = {}
    for record in records:
        key = keys[record.id]
        if key not in skip and key not in todo:
            todo[key] = record.structure
    return list(todo.items())


def batches(items: list[tuple[str, dict]], size: int) -> list[list[tuple[str, dict]]]:
    """Split featurization items into batches of at most about ``size`` with equal cost.

    Structure featurizers cost in proportion to the number of sites, so the largest
    structures are dealt first, each to the batch with the fewest sites so far; batches
    then take about the same time and no worker waits on one heavy tail batch.
    """
    if not items:
        return []
    count = math.ceil(len(items) / size)
    heap = [(0, i) for i in range(count)]
    out: list[list[tuple[str, dict]]] = [[] for _ in range(count)]
    for item in sorted(items, key=lambda it: (-len(it[1]["sites"]), it[0])):
        load, index = heapq.heappop(heap)
        out[index].append(item)
        heapq.heappush(heap, (load + len(item[1]["sites"]), index))
    return out


def mean_sites(records: list[StructureRecord]) -> float:
    """Average number of sites per structure."""
    return sum(len(r.structure["sites"]) for r in records) / max(len(records), 1)


def feature_failures(records: list[StructureRecord], table: FeatureTable) -> list[RecordFailure]:
    """The records that failed to featurize, as failures of stage ``featurize``."""
    by_id = {r.id: r for r in records}
    return [
        RecordFailure(by_id[i].source, by_id[i].source_id, by_id[i].row, "featurize", message)
        for i, message in sorted(table.failures.items())
    ]
