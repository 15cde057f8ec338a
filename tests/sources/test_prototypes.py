"""Prototype decoration: exact candidate sets, structures, lattice rule, streaming, errors."""

from __future__ import annotations

import itertools
import math
import time
import tracemalloc
from pathlib import Path

import pytest
from pymatgen.core import Composition, Element, Lattice, Species, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import SnapshotBuilder, open_source, read_source
from matscreen.tasks.sources.prototype_cells import load_prototype
from matscreen.tasks.sources.prototypes import (
    iter_candidates,
    iter_prototypes,
    reduced_formula,
)
from matscreen.tasks.sources.records import RecordFailure, StructureRecord
from matscreen.tasks.spec import PrototypeSourceSpec


def make_spec(
    prototype: str, sites: dict[str, list[str]], **options: object
) -> PrototypeSourceSpec:
    return PrototypeSourceSpec(
        kind="prototypes", name="gen", prototype=prototype, sites=sites, **options
    )


def read(prototype: str, sites: dict[str, list[str]], **options: object) -> list[StructureRecord]:
    result = read_source(make_spec(prototype, sites, **options))
    assert result.failures == []
    return result.records


def by_id(records: list[StructureRecord]) -> dict[str, StructureRecord]:
    return {record.source_id: record for record in records}


def structure_of(record: StructureRecord) -> Structure:
    return Structure.from_dict(record.structure)


def space_group(record: StructureRecord) -> str:
    return SpacegroupAnalyzer(structure_of(record)).get_space_group_symbol()


def test_alkaline_earth_titanates_and_zirconates_are_all_neutral() -> None:
    # Ca, Sr, Ba are 2+ only; Ti and Zr may be 4+; 2 + 4 - 3*2 = 0 for every pair.
    records = read("perovskite_ABX3", {"A": ["Ca", "Sr", "Ba"], "B": ["Ti", "Zr"], "X": ["O"]})
    assert [record.source_id for record in records] == [
        "perovskite_ABX3:Ca-Ti-O3",
        "perovskite_ABX3:Ca-Zr-O3",
        "perovskite_ABX3:Sr-Ti-O3",
        "perovskite_ABX3:Sr-Zr-O3",
        "perovskite_ABX3:Ba-Ti-O3",
        "perovskite_ABX3:Ba-Zr-O3",
    ]
    assert [record.formula for record in records] == [
        "CaTiO3",
        "CaZrO3",
        "SrTiO3",
        "SrZrO3",
        "BaTiO3",
        "BaZrO3",
    ]
    for record in records:
        assert record.properties == {}
        assert record.extra["oxidation_states"]["X"] == {"O": -2}
        assert structure_of(record).composition.num_atoms == 5
        assert space_group(record) == "Pm-3m"


def test_combinations_that_cannot_be_neutral_are_left_out() -> None:
    # ABO3 needs A + B = 6. Na and K are 1+ only, so B must be 5+: only Nb (ICSD 2-5+);
    # Ti tops at 4+ and Al is 3+ only. La (ICSD 2+, 3+) needs B = 3+ or 4+: Ti, Nb and Al.
    records = read("perovskite_ABX3", {"A": ["Na", "K", "La"], "B": ["Ti", "Nb", "Al"], "X": ["O"]})
    found = by_id(records)
    assert sorted(found) == sorted(
        f"perovskite_ABX3:{name}"
        for name in ("Na-Nb-O3", "K-Nb-O3", "La-Ti-O3", "La-Nb-O3", "La-Al-O3")
    )
    # When several assignments are neutral, the one most frequent in the ICSD is kept:
    # La3+ Ti3+ over La2+ Ti4+ in LaTiO3.
    assert found["perovskite_ABX3:La-Ti-O3"].extra["oxidation_states"] == {
        "A": {"La": 3},
        "B": {"Ti": 3},
        "X": {"O": -2},
    }
    assert found["perovskite_ABX3:Na-Nb-O3"].extra["oxidation_states"]["B"] == {"Nb": 5}


def test_mixed_anion_groups_like_castelli() -> None:
    # X charge: O3 -6, O2N -7, ON2 -8, N3 -9. A + B reaches Ba-Ti {4,5,6}, Ba-Ta {5,6,7},
    # La-Ti {4..7}, La-Ta {5..8} (Ta ICSD 3-5+), so N3 never balances.
    records = read(
        "perovskite_ABX3",
        {"A": ["Ba", "La"], "B": ["Ti", "Ta"], "X": ["O", "O2N", "ON2", "N3"]},
    )
    found = by_id(records)
    assert sorted(found) == sorted(
        f"perovskite_ABX3:{name}"
        for name in (
            "Ba-Ti-O3",
            "Ba-Ta-O3",
            "Ba-Ta-O2N",
            "La-Ti-O3",
            "La-Ti-O2N",
            "La-Ta-O3",
            "La-Ta-O2N",
            "La-Ta-ON2",
        )
    )
    batao2n = found["perovskite_ABX3:Ba-Ta-O2N"]
    assert batao2n.extra["sites"] == {"A": "Ba", "B": "Ta", "X": "O2N"}
    assert batao2n.extra["oxidation_states"] == {
        "A": {"Ba": 2},
        "B": {"Ta": 5},
        "X": {"O": -2, "N": -3},
    }
    structure = structure_of(batao2n)
    # The group fills the X sites in order: O on the first two face centres, N on the third.
    assert [str(site.specie) for site in structure] == ["Ba", "Ta", "O", "O", "N"]
    assert structure.composition.reduced_formula == "BaTaNO2"
    # One N among three face centres lowers cubic Pm-3m to tetragonal.
    assert space_group(batao2n) == "P4/mmm"
    assert structure_of(found["perovskite_ABX3:La-Ta-ON2"]).composition.as_dict() == {
        "La": 1.0,
        "Ta": 1.0,
        "O": 1.0,
        "N": 2.0,
    }


def test_distinct_elements_flag() -> None:
    sites = {"A": ["Sr", "Ti"], "B": ["Ti"], "X": ["O"]}
    assert [r.source_id for r in read("perovskite_ABX3", sites)] == ["perovskite_ABX3:Sr-Ti-O3"]
    # Ti2+ on A and Ti4+ on B balance O3, so only the flag removed Ti-Ti-O3.
    both = read("perovskite_ABX3", sites, distinct_elements=False)
    assert [r.source_id for r in both] == ["perovskite_ABX3:Sr-Ti-O3", "perovskite_ABX3:Ti-Ti-O3"]
    assert both[1].extra["oxidation_states"] == {"A": {"Ti": 2}, "B": {"Ti": 4}, "X": {"O": -2}}


@pytest.mark.parametrize(
    ("prototype", "sites", "formula", "symbol", "measured", "tolerance"),
    [
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": ["O"]}, "SrTiO3", "Pm-3m", 3.905, 0.05),
        ("perovskite_ABX3", {"A": ["Ba"], "B": ["Ti"], "X": ["O"]}, "BaTiO3", "Pm-3m", 4.00, 0.10),
        ("rocksalt_AX", {"A": ["Na"], "X": ["Cl"]}, "NaCl", "Fm-3m", 5.640, 0.02),
        ("rocksalt_AX", {"A": ["Mg"], "X": ["O"]}, "MgO", "Fm-3m", 4.212, 0.02),
        ("zincblende_AX", {"A": ["Zn"], "X": ["S"]}, "ZnS", "F-43m", 5.409, 0.05),
        ("fluorite_AX2", {"A": ["Ca"], "X": ["F"]}, "CaF2", "Fm-3m", 5.463, 0.05),
    ],
)
def test_structure_space_group_and_lattice_parameter(
    prototype: str,
    sites: dict[str, list[str]],
    formula: str,
    symbol: str,
    measured: float,
    tolerance: float,
) -> None:
    (record,) = read(prototype, sites)
    structure = structure_of(record)
    assert record.formula == formula
    assert structure.is_ordered
    analyzer = SpacegroupAnalyzer(structure)
    assert analyzer.get_space_group_symbol() == symbol
    conventional = analyzer.get_conventional_standard_structure()
    assert conventional.lattice.a == pytest.approx(record.extra["lattice_parameter"], rel=1e-6)
    # The touching-sphere rule never squeezes a site, so it sits at or above the measured a.
    assert measured <= conventional.lattice.a <= measured * (1 + tolerance)
    assert record.extra["radius_kind"] == "shannon_ionic"
    assert record.extra["prototype_space_group"] == symbol


def test_perovskite_lattice_and_tolerance_factor_from_shannon_radii() -> None:
    (record,) = read("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": ["O"]})
    # Shannon: Sr2+ XII 1.44, Ti4+ VI 0.605, O2- VI 1.40 Å.
    assert record.extra["site_radii"] == [1.44, 0.605, 1.4, 1.4, 1.4]
    # A-X contact: a = √2 (1.44 + 1.40) = 4.0164 > B-X contact 2 (0.605 + 1.40) = 4.01.
    assert record.extra["lattice_parameter"] == pytest.approx(math.sqrt(2) * 2.84)
    assert record.extra["tolerance_factor"] == pytest.approx(2.84 / (math.sqrt(2) * 2.005))
    assert record.extra["prototype"] == "perovskite_ABX3"


def test_combination_without_neutral_assignment_uses_atomic_radii() -> None:
    records = read("perovskite_ABX3", {"A": ["Na"], "B": ["Ti"], "X": ["O"]}, charge_neutral=False)
    (record,) = records
    assert record.source_id == "perovskite_ABX3:Na-Ti-O3"
    assert record.extra["oxidation_states"] is None
    assert record.extra["radius_kind"] == "atomic"
    assert record.extra["tolerance_factor"] is None
    # Atomic radii Na 1.80, Ti 1.40, O 0.60 Å: B-X contact 2 (1.40 + 0.60) = 4.0 binds
    # (A-B √(4/3) 3.2 = 3.70, A-A 2·1.80 = 3.6, A-X √2·2.4 = 3.39).
    assert record.extra["lattice_parameter"] == pytest.approx(4.0)


def test_candidate_without_any_radius_is_a_failure_and_the_read_goes_on() -> None:
    spec = make_spec("rocksalt_AX", {"A": ["Na"], "X": ["He", "Cl"]}, charge_neutral=False)
    result = read_source(spec)
    assert [failure.source_id for failure in result.failures] == ["rocksalt_AX:Na-He"]
    assert isinstance(result.failures[0], RecordFailure)
    assert "He" in result.failures[0].message
    assert [record.source_id for record in result.records] == ["rocksalt_AX:Na-Cl"]
    assert result.snapshot.n_rows == 2


def test_snapshot_and_limit() -> None:
    sites = {"A": ["Ca", "Sr", "Ba"], "B": ["Ti", "Zr"], "X": ["O"]}
    spec = make_spec("perovskite_ABX3", sites, limit=4)
    result = read_source(spec)
    assert [r.source_id for r in result.records] == [
        "perovskite_ABX3:Ca-Ti-O3",
        "perovskite_ABX3:Ca-Zr-O3",
        "perovskite_ABX3:Sr-Ti-O3",
        "perovskite_ABX3:Sr-Zr-O3",
    ]
    snapshot = result.snapshot
    assert snapshot.n_rows == 4
    assert snapshot.location == "perovskite_ABX3"
    assert snapshot.kind == "prototypes"
    assert snapshot.query["sites"] == sites
    assert snapshot.query["charge_neutral"] is True
    assert snapshot.query["limit"] == 4
    assert snapshot.database_version.startswith("pymatgen ")
    # The reader itself honours the limit, without the driver's cut-off.
    builder = SnapshotBuilder(spec, "perovskite_ABX3")
    assert len(list(iter_prototypes(spec, builder))) == 4
    # Same spec, same candidates: same content hash.
    assert read_source(spec).snapshot.sha256 == snapshot.sha256
    other = read_source(make_spec("perovskite_ABX3", sites, limit=3)).snapshot
    assert other.sha256 != snapshot.sha256


def test_file_prototype_with_dummy_species(tmp_path: Path) -> None:
    # Cubic perovskite cell with dummy species Q (A site) and Z (B site); O stays O.
    cif = tmp_path / "abo3.cif"
    cif.write_text(
        "data_abo3\n"
        "_cell_length_a 4.0\n_cell_length_b 4.0\n_cell_length_c 4.0\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\n"
        "loop_\n _symmetry_equiv_pos_as_xyz\n 'x, y, z'\n"
        "loop_\n _atom_site_type_symbol\n _atom_site_label\n"
        " _atom_site_fract_x\n _atom_site_fract_y\n _atom_site_fract_z\n _atom_site_occupancy\n"
        " Q Q1 0 0 0 1\n Z Z1 0.5 0.5 0.5 1\n"
        " O O1 0.5 0.5 0 1\n O O2 0.5 0 0.5 1\n O O3 0 0.5 0.5 1\n"
    )
    prototype = load_prototype(str(cif), "gen")
    assert prototype.labels == ("Q", "Z", "O")
    # Neighbours within 1.2x the nearest distance: Q 12 O, Z 6 O, O 2 Z.
    assert prototype.coordination == (12, 6, 2, 2, 2)
    result = read_source(make_spec(str(cif), {"Q": ["Sr", "Na"], "Z": ["Ti"]}))
    # Na+ Ti4+ O3 is -1: left out.
    (record,) = result.records
    assert record.source_id == "abo3:Sr-Ti-O3"
    assert record.formula == "SrTiO3"
    assert space_group(record) == "Pm-3m"
    # O2- at coordination II is 1.35 Å, so the A-X contact gives √2 (1.44 + 1.35).
    assert record.extra["lattice_parameter"] == pytest.approx(math.sqrt(2) * 2.79)
    assert result.snapshot.location == str(cif.resolve())
    assert len(result.snapshot.query["prototype_sha256"]) == 64


def test_file_prototype_with_real_elements_and_oxidation_states(tmp_path: Path) -> None:
    rocksalt = Structure.from_spacegroup(
        "Fm-3m",
        Lattice.cubic(5.64),
        [Species("Na", 1), Species("Cl", -1)],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    ).get_primitive_structure()
    path = tmp_path / "nacl.cif"
    CifWriter(rocksalt).write_file(path)
    prototype = load_prototype(str(path), "gen")
    assert prototype.charge_signs == {"Na": 1, "Cl": -1}
    assert prototype.coordination == (6, 6)
    records = read(str(path), {"Na": ["Li", "K", "Mg"], "Cl": ["Cl", "Br"]})
    # Mg2+ with a 1- halide is not neutral.
    assert [r.source_id for r in records] == ["nacl:Li-Cl", "nacl:Li-Br", "nacl:K-Cl", "nacl:K-Br"]
    assert all(space_group(r) == "Fm-3m" for r in records)
    # K+ VI 1.38 + Cl- VI 1.81 = 3.19 Å is the K-Cl distance, half the cubic a.
    kcl = structure_of(by_id(records)["nacl:K-Cl"])
    assert kcl.get_distance(0, 1) == pytest.approx(3.19)


@pytest.mark.parametrize(
    ("prototype", "sites", "needle"),
    [
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": ["O"], "C": ["Ca"]}, "['C']"),
        ("perovskite_ABX3", {"A": ["Sr"], "X": ["O"]}, "sites lacks label 'B'"),
        ("perovskite_ABX3", {"A": ["Sr", "Xx"], "B": ["Ti"], "X": ["O"]}, "sites.A[1]: 'Xx'"),
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": ["O2N2"]}, "sites.X[0]: 'O2N2'"),
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["ti"], "X": ["O"]}, "sites.B[0]: 'ti'"),
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": ["O", "O3"]}, "sites.X[1]: 'O3'"),
        ("perovskite_ABX3", {"A": ["Sr"], "B": ["Ti"], "X": []}, "sites.X is an empty list"),
        ("spinel_AB2X4", {"A": ["Mg"]}, "'spinel_AB2X4' is neither a built-in"),
    ],
)
def test_bad_specs_raise_source_error_naming_the_key(
    prototype: str, sites: dict[str, list[str]], needle: str
) -> None:
    with pytest.raises(SourceError) as caught:
        read_source(make_spec(prototype, sites))
    assert needle in str(caught.value)
    assert "source gen" in str(caught.value)


#: 76 real elements up to Bi, noble gases left out (they have no atomic radius).
SYMBOLS = [element.symbol for element in Element if element.Z <= 83 and not element.is_noble_gas]
BIG_SITES = {"A": SYMBOLS[:50], "B": SYMBOLS[20:70], "X": SYMBOLS[:40]}


def _big_spec() -> PrototypeSourceSpec:
    # 50 x 50 x 40 = 100,000 combinations, all kept with both filters off.
    return make_spec("perovskite_ABX3", BIG_SITES, charge_neutral=False, distinct_elements=False)


def test_first_records_of_a_large_space_come_at_once() -> None:
    read_start = time.perf_counter()
    first = list(itertools.islice(iter(open_source(_big_spec())), 10))
    elapsed = time.perf_counter() - read_start
    a, b = BIG_SITES["A"][0], BIG_SITES["B"][0]
    assert [record.source_id for record in first] == [
        f"perovskite_ABX3:{a}-{b}-{x}3" for x in BIG_SITES["X"][:10]
    ]
    # Building all 10^5 records takes about half a minute; ten take milliseconds.
    assert elapsed < 3.0


def test_full_candidate_stream_runs_in_constant_memory() -> None:
    spec = _big_spec()
    list(itertools.islice(iter_candidates(spec), 1))  # load pymatgen's tables once
    tracemalloc.start()
    try:
        stream = iter_candidates(spec)
        for _ in itertools.islice(stream, 100):
            pass
        early_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        count = 100 + sum(1 for _ in stream)
        full_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 100_000
    # A materialized list of 10^5 candidates would hold tens of MB.
    assert full_peak < early_peak + 1_000_000


def test_record_stream_memory_does_not_grow_with_the_count() -> None:
    spec = _big_spec()
    tracemalloc.start()
    try:
        stream = iter(open_source(spec))
        for _ in itertools.islice(stream, 100):
            pass
        early_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        kinds = {StructureRecord: 0, RecordFailure: 0}
        for item in itertools.islice(stream, 3000):
            kinds[type(item)] += 1
        late_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kinds[StructureRecord] + kinds[RecordFailure] == 3000
    # 3000 kept records would take well over 10 MB; streaming keeps one at a time.
    assert late_peak < early_peak + 2_000_000


@pytest.mark.parametrize(
    "prototype", ["perovskite_ABX3", "rocksalt_AX", "zincblende_AX", "fluorite_AX2"]
)
def test_records_hold_what_pymatgen_writes_for_the_decorated_structure(prototype: str) -> None:
    from pymatgen.core import Composition

    from matscreen.tasks.hashing import structure_hash
    from matscreen.tasks.sources.prototype_cells import load_prototype

    loaded = load_prototype(prototype, "gen")
    symbols = ["Sr", "Ti", "O", "N", "Ba", "F", "Na", "Cl", "Zn", "S", "Ca"]
    sites = {label: symbols for label in loaded.labels}
    records = read(prototype, sites, charge_neutral=False, limit=60)
    assert len(records) == 60
    for record in records:
        species = [site["species"][0]["element"] for site in record.structure["sites"]]
        expected = loaded.decorate(species, record.extra["lattice_parameter"]).as_dict()
        got = record.structure
        # The physical content, the hash that keys the feature store, and the formula agree
        # exactly; lattice lengths, angles and volume to the last digits.
        assert structure_hash(got) == structure_hash(expected)
        assert got["lattice"]["matrix"] == expected["lattice"]["matrix"]
        assert [s["abc"] for s in got["sites"]] == [s["abc"] for s in expected["sites"]]
        for mine, theirs in zip(got["sites"], expected["sites"], strict=True):
            assert {k: v for k, v in mine.items() if k != "xyz"} == {
                k: v for k, v in theirs.items() if k != "xyz"
            }
            assert mine["xyz"] == pytest.approx(theirs["xyz"], rel=1e-14, abs=1e-14)
        for key in ("a", "b", "c", "alpha", "beta", "gamma", "volume"):
            assert got["lattice"][key] == pytest.approx(expected["lattice"][key], rel=1e-13)
        assert got.keys() == expected.keys() and got["charge"] == expected["charge"]
        assert Structure.from_dict(got) == Structure.from_dict(expected)
        assert record.formula == Composition("".join(species)).reduced_formula


def double_perovskite_cif(folder: Path) -> Path:
    """The rock-salt ordered double perovskite Ba2TiNbO6 (Fm-3m), its 10-site primitive cell."""
    conventional = Structure.from_spacegroup(
        "Fm-3m",
        Lattice.cubic(8.0),
        ["Ba", "Ti", "Nb", "O"],
        [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0, 0]],
    )
    path = folder / "double.cif"
    conventional.get_primitive_structure().to(filename=str(path))
    return path


def test_decorations_that_swap_equivalent_labels_are_made_once(tmp_path: Path) -> None:
    # B and B' of the double perovskite are exchanged by a translation: (Ti, Mo) and
    # (Mo, Ti) are one crystal. Each crystal is made once, and what is left out is the same
    # crystal as something made (StructureMatcher), including with a mixed anion group.
    from pymatgen.analysis.structure_matcher import StructureMatcher

    import matscreen.tasks.sources.prototypes as prototypes

    sites = {
        "Ba": ["Sr", "Ba"],
        "Ti": ["Ti", "Nb", "Mo", "W"],
        "Nb": ["Ti", "Nb", "Mo", "W"],
        "O": ["O6", "O5N", "O4N2", "O5F"],
    }
    spec = make_spec(str(double_perovskite_cif(tmp_path)), sites)
    result = read_source(spec)
    assert result.snapshot.query["equivalent_labels"] == [["Nb", "Ti"]]
    made = {r.source_id: structure_of(r) for r in result.records}
    assert len(made) == 46
    assert "double:Sr2-Ti-Mo-O6" in made and "double:Sr2-Mo-Ti-O6" not in made

    class EveryImage(prototypes.FirstImage):
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            self.permutations = ()

    original = prototypes.FirstImage
    prototypes.FirstImage = EveryImage  # type: ignore[misc]
    try:
        everything = {r.source_id: structure_of(r) for r in read_source(spec).records}
    finally:
        prototypes.FirstImage = original  # type: ignore[misc]
    assert len(everything) == 92 and set(made) < set(everything)

    matcher = StructureMatcher()

    def same(a: Structure, b: Structure) -> bool:
        return a.composition.reduced_formula == b.composition.reduced_formula and matcher.fit(a, b)

    for source_id, structure in everything.items():
        matches = [m for m, kept in made.items() if same(structure, kept)]
        assert matches == ([source_id] if source_id in made else matches) and len(matches) == 1


def test_built_in_prototypes_exchange_no_labels() -> None:
    from matscreen.tasks.sources.prototype_symmetry import label_exchanging_permutations

    for name in ("perovskite_ABX3", "rocksalt_AX", "zincblende_AX", "fluorite_AX2"):
        assert label_exchanging_permutations(load_prototype(name, "gen")) == ()


@pytest.mark.parametrize(
    "species",
    [
        ["O", "O"],  # a special formula: O2, not O
        ["Li", "O"],  # Li2O2, not LiO
        ["H"],
        ["Ba", "Ti", "O", "O", "O"],
        ["Ba", "Ba", "Ti", "Nb", "O", "O", "O", "O", "O", "N"],
        ["Fe", "Fe", *["S", "O", "O", "O", "O"] * 3],  # a polyanion: Fe2(SO4)3
        ["Na", "Na", "Na", "P", "O", "O", "O", "O"],
        ["Sr", "Sr", "Sr", "Sr", "Fe", "Fe", "Mo", "Mo", *["O"] * 12],  # reduced by 2
        ["Cs", "Pb", "Cl", "Br", "I"],
    ],
)
def test_reduced_formula_is_pymatgens(species: list[str]) -> None:
    assert reduced_formula(species) == Composition("".join(species)).reduced_formula
    assert reduced_formula(list(reversed(species))) == reduced_formula(species)
