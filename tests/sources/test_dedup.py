"""Deduplication across and within sources, on real records."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from pymatgen.core import Structure

from matscreen.tasks.sources.base import read_source
from matscreen.tasks.sources.dedup import Deduplicator, deduplicate, kept_structures
from matscreen.tasks.spec import CsvCifSourceSpec, FilesSourceSpec


def _files(name: str, path: Path, **fields) -> FilesSourceSpec:
    return FilesSourceSpec(
        kind="files", name=name, path=path, licence="CC-BY-4.0", citation=["x"], **fields
    )


def test_the_same_crystal_from_two_databases_is_linked(data_dir: Path) -> None:
    # MP's summary documents and Alexandria's PBE entries both hold the Ac ground state and
    # one more Ac polymorph (relaxed independently, so the lattices differ slightly).
    mp = read_source(_files("mp", data_dir / "materials_project" / "summary_200.jsonl"))
    alexandria = read_source(
        _files("alex", data_dir / "optimade" / "alexandria_98.jsonl", id_key="entry_id")
    )
    marked = list(deduplicate([*mp.records, *alexandria.records]))
    duplicates = {r.id: r.duplicate_of for r in marked if r.duplicate_of}
    alex_ids = [r.id for r in alexandria.records]
    assert duplicates == {
        # MP documents that hold one structure twice (Ac2Mg; AcF3 in two cell settings,
        # with different reported gaps): the first one's labels are kept
        mp.records[26].id: mp.records[25].id,
        mp.records[138].id: mp.records[137].id,
        alex_ids[0]: mp.records[1].id,
        alex_ids[1]: mp.records[2].id,
    }
    assert all(not r.structure for r in marked if r.duplicate_of)
    assert sum(1 for r in marked if r.structure) == len(marked) - 4
    # Their own values stay with the duplicates.
    by_id = {r.id: r for r in marked}
    assert by_id[alex_ids[0]].formula == "Ac"


def test_exact_repeat_needs_no_matcher(data_dir: Path) -> None:
    mp = read_source(_files("mp", data_dir / "materials_project" / "mp2018_subset_100.jsonl"))
    seen = Deduplicator()
    first = [seen.add(r) for r in mp.records]
    calls = seen.matcher_calls
    again = [seen.add(r) for r in read_source(_files("again", mp.snapshot.location)).records]
    assert all(r.duplicate_of is None for r in first)
    assert [r.duplicate_of for r in again] == [r.id for r in first]
    assert seen.matcher_calls == calls


def test_a_deduplicator_that_forgot_holds_no_record(data_dir: Path) -> None:
    mp = read_source(_files("mp", data_dir / "materials_project" / "mp2018_subset_100.jsonl"))
    seen = Deduplicator()
    for record in mp.records:
        seen.add(record)
    seen.forget()
    again = [seen.add(r) for r in mp.records]
    assert [r.duplicate_of for r in again] == [None] * len(mp.records)


def test_different_decorations_of_one_formula_stay_apart(data_dir: Path) -> None:
    # The CMR perovskites hold A/B-swapped and anion-ordering variants with equal formulas:
    # they are different crystals with different heats of formation.
    spec = CsvCifSourceSpec(
        kind="csv_cif",
        name="cmr",
        path=data_dir / "perovskites_cmr" / "cubic_perovskites.csv",
        id_column="material_id",
        licence="CC-BY-4.0",
        citation=["x"],
        limit=800,
    )
    records = read_source(spec).records
    groups: dict[str, list[str]] = defaultdict(list)
    for record in records:
        groups[record.formula].append(record.id)
    shared = [ids for ids in groups.values() if len(ids) > 1]
    assert len(shared) >= 10
    seen = Deduplicator()
    marked = [seen.add(r) for r in records]
    assert all(r.duplicate_of is None for r in marked)


def test_volume_tolerance_separates_compressed_copies(data_dir: Path) -> None:
    from dataclasses import replace

    from pymatgen.core import Structure

    record = read_source(
        _files("mp", data_dir / "materials_project" / "mp2018_subset_100.jsonl", id_key="id")
    ).records[0]
    structure = Structure.from_dict(record.structure)

    def scaled(factor: float, source_id: str):
        copy = structure.copy()
        copy.scale_lattice(structure.volume * factor)
        return replace(record, source_id=source_id, structure=copy.as_dict())

    marked = list(deduplicate([record, scaled(1.04, "relaxed"), scaled(1.25, "expanded")]))
    assert [r.duplicate_of for r in marked] == [None, record.id, None]


def _mp_and_alexandria(data_dir: Path) -> tuple[list, list[str | None]]:
    """The MP summaries and Alexandria entries in one list, and what each one repeats."""
    mp = read_source(_files("mp", data_dir / "materials_project" / "summary_200.jsonl"))
    alexandria = read_source(
        _files("alex", data_dir / "optimade" / "alexandria_98.jsonl", id_key="entry_id")
    )
    records = [*mp.records, *alexandria.records]
    return records, [r.duplicate_of for r in deduplicate(records)]


def test_released_structures_are_read_back_when_a_match_needs_them(data_dir: Path) -> None:
    # A stream of chunks keeps only ids and volumes of earlier chunks; a later record of
    # the same crystal is still found (the kept structure read back through the loader),
    # exactly as without releasing.
    records, expected = _mp_and_alexandria(data_dir)

    stored = {r.id: r.structure for r in records}
    loaded: list[str] = []

    def load(record_id: str) -> dict:
        loaded.append(record_id)
        return stored[record_id]

    seen = Deduplicator(loader=load)
    marked = []
    for start in range(0, len(records), 7):
        marked += [seen.add(r) for r in records[start : start + 7]]
        seen.release()
    assert [r.duplicate_of for r in marked] == expected
    assert loaded and set(loaded) <= {r.id for r in records}
    assert all(entry[1] is None for kept in seen._by_formula.values() for entry in kept)


def test_releasing_needs_a_loader() -> None:
    with pytest.raises(ValueError, match="loader"):
        Deduplicator().release()


def test_remembered_records_mark_later_repeats_as_added_ones_do(data_dir: Path) -> None:
    # A resumed screen hands the deduplicator the records of chunks an earlier run
    # finished, with the repeats that run found among them; the records after them are
    # marked exactly as in one uninterrupted pass, with no matcher call for the first part.
    records, expected = _mp_and_alexandria(data_dir)
    first, rest = records[:150], records[150:]
    duplicates = {r.id: d for r, d in zip(first, expected, strict=False) if d}
    assert duplicates  # the MP part holds two repeats

    stored = {r.id: r.structure for r in records}
    marked = [replace(r, duplicate_of=duplicates.get(r.id)) for r in first]
    kept = kept_structures(marked)
    assert len(kept) == len(first) - len(duplicates)
    for record_id, _, _, volume in kept:
        structure = Structure.from_dict(stored[record_id])
        assert volume == pytest.approx(structure.volume / len(structure), rel=1e-12)
    seen = Deduplicator(loader=stored.__getitem__)
    seen.remember(kept)
    assert seen.matcher_calls == 0
    assert [seen.add(r).duplicate_of for r in rest] == expected[150:]
    # Records held released need a loader to be read back.
    with pytest.raises(ValueError, match="loader"):
        Deduplicator().remember(kept)
