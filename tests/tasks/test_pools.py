"""Training and candidate pools: every record is learned from, screened, or reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure

from matscreen.tasks.errors import SpecError
from matscreen.tasks.pools import POOL_STAGE, assign_pools, known_candidates
from matscreen.tasks.sources.dedup import environment_signature, mark_duplicates, may_match
from matscreen.tasks.sources.records import IngestResult, SourceSnapshot, StructureRecord
from matscreen.tasks.spec import load_spec

CUBIC_SITES = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def perovskite(a: str, b: str, length: float, shift: float = 0.0) -> dict:
    """ABX3 with A on the corner (12-fold) and B in the centre (6-fold), A moved by shift."""
    coords = [list(c) for c in CUBIC_SITES]
    coords[0][0] += shift
    return Structure(Lattice.cubic(length), [a, b, "O", "O", "O"], coords).as_dict()


def record(source: str, source_id: str, structure: dict, **properties: float | None):
    formula = Structure.from_dict(structure).composition.reduced_formula
    return StructureRecord(source, source_id, 1, formula, structure, dict(properties), {})


def result(source: str, records: list[StructureRecord]) -> IngestResult:
    snapshot = SourceSnapshot(source, "test", "memory", "0" * 64, 0, len(records), "", "CC0", ())
    return IngestResult(snapshot, records, [])


def test_pools_hold_every_record_once_with_reasons() -> None:
    training = result(
        "lab",
        [
            record("lab", "1", perovskite("Sr", "Ti", 3.95), energy=0.1),
            record("lab", "2", perovskite("Ba", "Zr", 4.25), energy=None),  # no label
            record("lab", "3", perovskite("Ca", "Ti", 3.85, shift=0.06), energy=-0.2),
        ],
    )
    screen = result(
        "decorations",
        [
            # SrTiO3 again, at another lattice parameter (12 % in volume): known.
            record("decorations", "SrTiO3", perovskite("Sr", "Ti", 4.15)),
            # Ti on the A site and Sr in the octahedron: same formula, another crystal.
            record("decorations", "TiSrO3", perovskite("Ti", "Sr", 4.15)),
            # CaTiO3, idealized (the training record has its A cation displaced) at about
            # the same volume: a duplicate of the training record, hence known too.
            record("decorations", "CaTiO3", perovskite("Ca", "Ti", 3.90)),
            record("decorations", "KNbO3", perovskite("K", "Nb", 4.05)),
        ],
    )
    both = result("mixed", [record("mixed", "a", perovskite("La", "Al", 3.8), energy=-0.5)])
    marked = mark_duplicates([training, screen, both])
    pools = assign_pools(
        marked, {"lab": "train", "decorations": "screen", "mixed": "both"}, ["energy"]
    )
    assert [r.id for r in pools.training] == ["lab:1", "lab:3", "mixed:a"]
    assert [r.id for r in pools.candidates] == [
        "decorations:TiSrO3",
        "decorations:KNbO3",
        "mixed:a",
    ]
    assert pools.known == {"decorations:SrTiO3": "lab:1", "decorations:CaTiO3": "lab:3"}
    reasons = {f.id: (f.stage, f.message) for f in pools.excluded}
    assert set(reasons) == {"lab:2", "decorations:SrTiO3"}
    assert pools.duplicates == {"decorations:CaTiO3": "lab:3"}
    assert reasons["lab:2"][0] == POOL_STAGE and "no label" in reasons["lab:2"][1]
    assert "already in the training pool as lab:1" in reasons["decorations:SrTiO3"][1]
    # Every record read is accounted for.
    read = sum(len(r.records) for r in marked)
    counted = len(pools.training) + len(pools.candidates) + len(pools.excluded)
    assert counted + len(pools.duplicates) - 1 == read  # mixed:a is in both pools
    assert not pools.retrospective


def test_no_candidate_source_is_a_retrospective_screen() -> None:
    lab = result("lab", [record("lab", "1", perovskite("Sr", "Ti", 3.95), energy=0.1)])
    pools = assign_pools([lab], {"lab": "train"}, ["energy"])
    assert pools.retrospective and pools.counts()["training"] == 1


def test_known_candidates_compare_only_look_alikes() -> None:
    train = [record("lab", "1", perovskite("Sr", "Ti", 3.9, shift=0.1), energy=0.0)]
    same = record("d", "same", perovskite("Sr", "Ti", 4.2))
    swapped = record("d", "swapped", perovskite("Ti", "Sr", 4.2))
    assert known_candidates([same, swapped], train) == {"d:same": "lab:1"}
    # The signatures of the idealized and displaced cells are close; of A and B swapped far.
    signatures = [
        environment_signature(Structure.from_dict(r.structure)) for r in (train[0], same, swapped)
    ]
    assert may_match(signatures[0], signatures[1])
    assert not may_match(signatures[1], signatures[2])


def _spec(tmp_path: Path, sources: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"""
name: pools
sources:
{sources}
models: [{{target: band_gap}}]
criteria: [{{property: band_gap, min: 1, unit: eV}}]
"""
    )
    return path


def test_spec_pools_are_checked(tmp_path: Path, perovskite_csv: Path) -> None:
    csv = f"""  - name: cmr
    kind: csv_cif
    path: {perovskite_csv}
    id_column: material_id
    properties: {{band_gap: {{column: dir_gap, unit: eV}}}}
    licence: MIT
    citation: [x]
"""
    decorations = """  - name: deco
    kind: prototypes
    prototype: perovskite_ABX3
    sites: {A: [Sr], B: [Ti], X: [O3]}
"""
    spec = load_spec(_spec(tmp_path, csv + decorations), tmp_path)
    assert [s.pool for s in spec.sources] == ["train", "screen"]
    with pytest.raises(SpecError, match="sources.0.pool"):
        load_spec(
            _spec(
                tmp_path,
                csv.replace("kind: csv_cif", "pool: both\n    kind: csv_cif").replace(
                    "both", "nothing"
                ),
            ),
            tmp_path,
        )
    with pytest.raises(SpecError, match="no source has pool 'train' or 'both'"):
        load_spec(
            _spec(tmp_path, csv.replace("kind: csv_cif", "pool: screen\n    kind: csv_cif")),
            tmp_path,
        )
    with pytest.raises(SpecError, match="sources.1.pool: decorated prototypes have no labels"):
        load_spec(
            _spec(tmp_path, csv + decorations.replace("kind:", "pool: train\n    kind:")), tmp_path
        )


def test_a_screen_with_nothing_left_to_screen_says_why() -> None:
    from matscreen.tasks.errors import ScreenError

    lab = result("lab", [record("lab", "1", perovskite("Sr", "Ti", 3.95), energy=0.1)])
    again = result("deco", [record("deco", "SrTiO3", perovskite("Sr", "Ti", 4.2))])
    pools = assign_pools([lab, again], {"lab": "train", "deco": "screen"}, ["energy"])
    assert not pools.retrospective and pools.known == {"deco:SrTiO3": "lab:1"}
    with pytest.raises(ScreenError, match=r"nothing to screen: .*\(deco\), 1 already known"):
        pools.check_candidates()
    other = result("deco", [record("deco", "KNbO3", perovskite("K", "Nb", 4.0))])
    pools = assign_pools([lab, other], {"lab": "train", "deco": "screen"}, ["energy"])
    pools.check_candidates()
    with pytest.raises(ScreenError, match="1 failed to featurize"):
        pools.check_candidates(featurized={"lab:1"})
