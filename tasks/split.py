"""Choose the held-out test set, before any featurization or fitting."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

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


def holdout_score(record_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the record id and the seed alone."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_split(ids: list[str], spec: SplitSpec) -> DataSplit:
    """Split record ids into training and held-out parts.

    A record is held out when the hash of (seed, id) falls below the test fraction. The
    choice depends on nothing but the record's own id and the seed: adding or removing
    other records (a new database release) never moves a record between the parts, so
    held-out metrics of successive runs stay comparable. The held-out share is the test
    fraction on average.

    Raises
    ------
    ModelError
        If there are fewer than two ids, the ids repeat, or one part would be empty.
    """
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ModelError(f"split: record ids repeat: {repeated[:10]}")
    if len(unique) < 2:
        raise ModelError(f"split: need at least 2 records, got {len(unique)}")
    test = [i for i in unique if holdout_score(i, spec.seed) < spec.test_fraction]
    train = [i for i in unique if holdout_score(i, spec.seed) >= spec.test_fraction]
    if not test or not train:
        raise ModelError(
            f"split: {len(unique)} records at test fraction {spec.test_fraction} leave "
            f"{len(train)} for training and {len(test)} held out; both must be non-empty"
        )
    return DataSplit(spec.method, spec.seed, spec.test_fraction, train, test)
