"""The two pools of a campaign: records to learn from, and candidates to screen.

Each source of a campaign says what its records are for (``pool`` in its spec):

``train``
    Labelled records the models learn from. The held-out validation split is drawn from
    these only. A record with no label for any model's target cannot teach anything: it
    is reported (stage ``pool``), never dropped without a word.
``screen``
    Candidates to rank: hypothetical decorations, another database's entries, a folder
    of one's own CIFs. Labels are optional; where present they are shown beside the
    predictions and feed the screening validation. A candidate that is the same crystal
    as a training record — up to its lattice scale, since a decorated candidate's lattice
    comes from ionic radii while the training structure was relaxed — is already known:
    it is reported with the training record's id rather than screened again.
``both``
    Every record is a candidate; its labelled records also teach the models.

A campaign with no ``screen`` or ``both`` source screens its held-out validation records
(a retrospective screen, whose hits can be checked against the labels); one whose
candidate sources leave nothing to screen stops with a message saying what became of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from matscreen.tasks.errors import ScreenError
from matscreen.tasks.sources.dedup import environment_signature, may_match
from matscreen.tasks.sources.records import IngestResult, RecordFailure, StructureRecord

#: Stage name of the failures this module reports.
POOL_STAGE = "pool"


@dataclass(frozen=True)
class Pools:
    """Which records a campaign learns from and which it screens.

    Attributes
    ----------
    training
        Records the models learn from (at least one finite label of a model's target);
        the validation split is drawn from these.
    candidates
        Records to screen, in source order (empty for a retrospective screen, whose
        candidates are the held-out records).
    excluded
        Records of either pool that are neither trained on nor screened, each with its
        reason: no label in a ``train`` source, or a candidate already known as a
        training record.
    known
        ``{candidate id: training record id}`` of the candidates in ``excluded`` that
        repeat a training record.
    duplicates
        ``{record id: id of the first record of the same structure}`` for every record
        that repeated an earlier one (in any pool), as the ingest step marked them.
    """

    training: list[StructureRecord]
    candidates: list[StructureRecord]
    excluded: list[RecordFailure] = field(default_factory=list)
    known: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    screen_sources: tuple[str, ...] = ()

    @property
    def retrospective(self) -> bool:
        """Whether the campaign has no candidate source and screens its held-out records."""
        return not self.screen_sources

    def check_candidates(self, featurized: set[str] | frozenset[str] | None = None) -> None:
        """Refuse a screen left with no candidate (all known, duplicated or failed).

        Raises
        ------
        ScreenError
            Naming the candidate sources and what became of their records.
        """
        if self.retrospective:
            return
        left = [c for c in self.candidates if featurized is None or c.id in featurized]
        if left:
            return
        sources = ", ".join(self.screen_sources)
        why = [f"{len(self.known)} already known as training records"]
        if featurized is not None:
            why.append(f"{len(self.candidates)} failed to featurize")
        raise ScreenError(
            f"nothing to screen: of the records of the candidate sources ({sources}), "
            + ", ".join(why)
            + "; see the catalog's record errors (matscreen find) for each one's reason"
        )

    def counts(self) -> dict[str, int]:
        """Sizes of the pools and of every reason a record was left out."""
        return {
            "training": len(self.training),
            "candidates": len(self.candidates),
            "excluded": len(self.excluded),
            "known_candidates": len(self.known),
            "duplicates": len(self.duplicates),
        }


def _labelled(record: StructureRecord, targets: Sequence[str]) -> bool:
    values = (record.properties.get(t) for t in targets)
    return any(v is not None and math.isfinite(v) for v in values)


def _failure(record: StructureRecord, message: str) -> RecordFailure:
    return RecordFailure(record.source, record.source_id, record.row, POOL_STAGE, message)


def assign_pools(
    results: Iterable[IngestResult],
    pools: Mapping[str, str],
    targets: Sequence[str],
    match_known: bool = True,
) -> Pools:
    """Sort the records of a campaign's sources into its training and candidate pools.

    Parameters
    ----------
    results
        One ingest result per source, duplicates marked (first source first).
    pools
        ``{source name: "train" | "screen" | "both"}``.
    targets
        The models' targets; a training record needs a finite label of one of them.
    match_known
        Look for candidates of ``screen`` sources that repeat a training record up to
        the lattice scale (:func:`known_candidates`).

    Returns
    -------
    Pools
        The pools; every record read is in one of them, in ``excluded`` with its reason,
        or in ``duplicates``.
    """
    results = list(results)
    screen_sources = tuple(
        r.snapshot.source for r in results if pools[r.snapshot.source] in ("screen", "both")
    )
    training: list[StructureRecord] = []
    candidates: list[StructureRecord] = []
    screen_only: set[str] = set()
    excluded: list[RecordFailure] = []
    duplicates: dict[str, str] = {}
    for result in results:
        pool = pools[result.snapshot.source]
        for record in result.records:
            if record.duplicate_of is not None:
                duplicates[record.id] = record.duplicate_of
                continue
            if pool in ("screen", "both"):
                candidates.append(record)
                if pool == "screen":
                    screen_only.add(record.id)
            if pool in ("train", "both"):
                if _labelled(record, targets):
                    training.append(record)
                elif pool == "train":
                    excluded.append(
                        _failure(
                            record,
                            f"no label for any model target ({', '.join(targets)}); a "
                            "'train' source's records need one (use pool 'screen' or "
                            "'both' to rank unlabelled records)",
                        )
                    )
    known: dict[str, str] = {}
    if match_known:
        known = known_candidates([c for c in candidates if c.id in screen_only], training)
    if known:
        by_id = {c.id: c for c in candidates}
        excluded += [
            _failure(
                by_id[i],
                f"already in the training pool as {j} (the same crystal up to its lattice "
                "scale); its label is known",
            )
            for i, j in known.items()
        ]
        candidates = [c for c in candidates if c.id not in known]
    # A duplicate of a training record that came from a 'screen' source is known too.
    training_ids = {r.id for r in training}
    for record_id, first in duplicates.items():
        if first in training_ids and record_id not in known:
            known[record_id] = first
    return Pools(training, candidates, excluded, known, duplicates, screen_sources)


class TrainingMatcher:
    """Finds candidates that are the same crystal as a training record, up to lattice scale.

    A decorated candidate's lattice comes from ionic radii and a training structure was
    relaxed, so their volumes differ by several per cent; pymatgen's StructureMatcher
    (default tolerances, volumes scaled to each other) decides whether the arrangement of
    the atoms is the same. Only records of one reduced formula (``formula``, which every
    reader sets to pymatgen's reduced formula) and one
    :func:`~matscreen.tasks.sources.dedup.environment_signature` are compared, so the cost
    grows with the candidates that look like a training record, not with the pool. Built
    once per campaign, it checks a candidate stream chunk by chunk; each training
    structure is parsed once, when a candidate first needs it.
    """

    def __init__(self, training: Sequence[StructureRecord]) -> None:
        from pymatgen.analysis.structure_matcher import StructureMatcher

        self._by_formula: dict[str, list[StructureRecord]] = defaultdict(list)
        for record in training:
            self._by_formula[record.formula].append(record)
        self._matcher = StructureMatcher()
        self._parsed: dict[str, tuple[Any, dict[str, float]]] = {}

    def _parse(self, record: StructureRecord) -> tuple[Any, dict[str, float]]:
        from pymatgen.core import Structure

        structure = Structure.from_dict(record.structure)
        return structure, environment_signature(structure)

    def known(self, candidates: Sequence[StructureRecord]) -> dict[str, str]:
        """``{candidate id: id of the matching training record}``."""
        known: dict[str, str] = {}
        if not self._by_formula:
            return known
        for candidate in candidates:
            same = self._by_formula.get(candidate.formula)
            if not same:
                continue
            mine, signature = self._parse(candidate)
            for record in same:
                if record.id not in self._parsed:
                    self._parsed[record.id] = self._parse(record)
                theirs, their_signature = self._parsed[record.id]
                if may_match(their_signature, signature) and self._matcher.fit(theirs, mine):
                    known[candidate.id] = record.id
                    break
        return known


def known_candidates(
    candidates: Sequence[StructureRecord], training: Sequence[StructureRecord]
) -> dict[str, str]:
    """Candidates that are the same crystal as a training record (:class:`TrainingMatcher`).

    Returns
    -------
    dict
        ``{candidate id: id of the matching training record}``.
    """
    return TrainingMatcher(training).known(candidates)
