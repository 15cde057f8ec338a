"""Choose the held-out test set, before any featurization or fitting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matscreen.tasks.errors import ModelError
from matscreen.tasks.spec import SplitSpec


@dataclass(frozen=True)
class DataSplit:
    """Record ids of the training and held-out parts (each sorted)."""

    method: str
    seed: int
    test_fraction: float
    train_ids: list[str]
    test_ids: list[str]


def choose_split(ids: list[str], spec: SplitSpec) -> DataSplit:
    """Split record ids at random into training and held-out parts.

    The result depends only on the set of ids and the spec (seed, fraction), not on the
    order the ids come in.

    Raises
    ------
    ModelError
        If there are fewer than two ids or the ids repeat.
    """
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        raise ModelError(f"split: {len(ids) - len(unique)} record ids repeat")
    if len(unique) < 2:
        raise ModelError(f"split: need at least 2 records, got {len(unique)}")
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(unique))
    n_test = min(max(1, round(spec.test_fraction * len(unique))), len(unique) - 1)
    test = sorted(unique[i] for i in order[:n_test])
    train = sorted(unique[i] for i in order[n_test:])
    return DataSplit(spec.method, spec.seed, spec.test_fraction, train, test)
