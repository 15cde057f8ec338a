"""Choose the held-out test set, before any featurization or fitting."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from matscreen.tasks.errors import SplitError
from matscreen.tasks.spec import SplitSpec

#: Split methods that hold out whole groups of records rather than single records.
GROUPED_METHODS = ("composition", "chemsys")


@dataclass(frozen=True)
class DataSplit:
    """Record ids of the training and held-out parts (each sorted).

    ``n_groups`` is the number of distinct groups (formulas or chemical systems) of a
    grouped split, 0 for a random one.
    """

    method: str
    seed: int
    test_fraction: float
    train_ids: list[str]
    test_ids: list[str]
    n_groups: int = 0


def holdout_score(record_id: str, seed: int) -> float:
    """A number in [0, 1) fixed by the record id (or group key) and the seed alone."""
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_key(formula: str, method: str) -> str:
    """The group a formula belongs to: its reduced formula, or its chemical system.

    Parameters
    ----------
    formula
        Any formula pymatgen reads (``Sr2Ti2O6``, ``SrTiO3``).
    method
        ``composition`` (reduced formula, so polymorphs and supercells share a group) or
        ``chemsys`` (the sorted elements joined by ``-``, e.g. ``O-Sr-Ti``).

    Raises
    ------
    SplitError
        If the method is not a grouped one or the formula cannot be read.
    """
    from pymatgen.core import Composition

    try:
        composition = Composition(formula)
    except (ValueError, KeyError) as exc:
        raise SplitError(f"split: cannot read formula {formula!r}: {exc}") from exc
    if method == "composition":
        return composition.reduced_formula
    if method == "chemsys":
        return composition.chemical_system
    raise SplitError(f"split: method {method!r} has no groups (grouped: {GROUPED_METHODS})")


def record_groups(records: Iterable[object], method: str) -> dict[str, str] | None:
    """``{record id: group key}`` for a grouped split method, None for ``random``.

    ``records`` are structure records (anything with ``id`` and ``formula``).
    """
    if method not in GROUPED_METHODS:
        return None
    return {r.id: group_key(r.formula, method) for r in records}  # type: ignore[attr-defined]


def choose_split(
    ids: list[str], spec: SplitSpec, groups: Mapping[str, str] | None = None
) -> DataSplit:
    """Split record ids into training and held-out parts.

    A record is held out when the hash of (seed, id) — or, for a grouped method, of (seed,
    the record's group) — falls below the test fraction. The choice depends on nothing but
    the record's own id (or group) and the seed: adding or removing other records (a new
    database release) never moves a record between the parts, so held-out metrics of
    successive runs stay comparable. The held-out share is the test fraction on average
    (over records, or over groups).

    Parameters
    ----------
    ids
        Record ids, each once.
    spec
        Method, test fraction and seed.
    groups
        ``{record id: group key}`` for the grouped methods (see :func:`record_groups`).

    Raises
    ------
    SplitError
        If there are fewer than two ids, the ids repeat, a grouped method lacks a record's
        group, or one part would be empty.
    """
    unique = sorted(set(ids))
    if len(unique) != len(ids):
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise SplitError(f"split: record ids repeat: {repeated[:10]}")
    if len(unique) < 2:
        raise SplitError(f"split: need at least 2 records, got {len(unique)}")
    n_groups = 0
    if spec.method in GROUPED_METHODS:
        if groups is None:
            raise SplitError(f"split: method {spec.method!r} needs each record's group")
        missing = [i for i in unique if i not in groups]
        if missing:
            raise SplitError(f"split: no {spec.method} group for records {missing[:10]}")
        keys = {i: groups[i] for i in unique}
        n_groups = len(set(keys.values()))
    else:
        keys = {i: i for i in unique}
    scores = {key: holdout_score(key, spec.seed) for key in set(keys.values())}
    test = [i for i in unique if scores[keys[i]] < spec.test_fraction]
    train = [i for i in unique if scores[keys[i]] >= spec.test_fraction]
    if not test or not train:
        raise SplitError(
            f"split: {len(unique)} records at test fraction {spec.test_fraction} leave "
            f"{len(train)} for training and {len(test)} held out; both must be non-empty"
        )
    return DataSplit(spec.method, spec.seed, spec.test_fraction, train, test, n_groups)
