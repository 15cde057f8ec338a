"""Energy above the hull of known phases: checked against pymatgen's own PhaseDiagram.

The phases are hand-made formation energies in Sr-Ti-O on the real Materials Project
elemental references; pymatgen's diagrams are built here from total energies
(``E = N·ΔH_f + Σ n_el·μ_el``), independently of the code under test.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.references import (
    Phase,
    ReferencePhases,
    chemical_systems,
    element_energies,
    reference_phases,
)
from matscreen.tasks.models.stability import (
    COMPETING_COLUMNS,
    HULL_COLUMNS,
    hull_stability,
    shared_texts,
)
from matscreen.tasks.spec import StabilitySpec

#: (formula, formation energy per atom, training id). SrTiO3, SrO, TiO2, TiO and Ti2O3 are on
#: the hull; Sr2TiO4 lies above SrO + SrTiO3 (-23.5/7 = -3.357 eV/atom), SrO2 above SrO + O2
#: (-1.5 eV/atom).
TRAINING = [
    ("SrO", -3.0, "cmr:sro"),
    ("TiO2", -3.4, "cmr:tio2"),
    ("SrTiO3", -3.5, "cmr:sto"),
    ("Sr2TiO4", -3.3, "cmr:s2to"),
    ("TiO", -2.8, "cmr:tio"),
    ("Ti2O3", -3.2, "cmr:t2o3"),
    ("SrO2", -1.2, "cmr:sro2"),
]


@pytest.fixture(scope="module")
def element_file(data_dir: Path) -> Path:
    return data_dir / "materials_project" / "elemental_reference_entries.json.gz"


@pytest.fixture(scope="module")
def mu(element_file: Path) -> dict[str, float]:
    return element_energies(element_file)


@pytest.fixture(scope="module")
def phases(element_file: Path) -> ReferencePhases:
    spec = StabilitySpec(formation_energy="formation_energy_per_atom", elements=element_file)
    return reference_phases(spec, TRAINING)


def total(formula: str, formation: float, mu: dict[str, float]) -> PDEntry:
    composition = Composition(formula)
    energy = formation * composition.num_atoms
    energy += sum(n * mu[str(el)] for el, n in composition.items())
    return PDEntry(composition, energy)


def pymatgen_diagram(mu: dict[str, float], known: list[tuple[str, float, str]]) -> PhaseDiagram:
    entries = [total(el, 0.0, mu) for el in ("Sr", "Ti", "O")]
    return PhaseDiagram(entries + [total(f, e, mu) for f, e, _ in known])


def rows(table, column: str) -> dict[str, object]:
    return dict(zip(table["id"], table[column], strict=True))


def test_reference_phases_hold_elements_and_training_records(phases: ReferencePhases) -> None:
    assert len(phases.elements) == 89
    by_origin = {p.origin: p for p in phases.phases}
    assert by_origin["training:cmr:sto"] == Phase("SrTiO3", -3.5, "training:cmr:sto", "cmr:sto")
    elements = [p for p in phases.phases if p.origin == "elements"]
    assert len(elements) == 89 and {p.formation_energy_per_atom for p in elements} == {0.0}
    assert phases.skipped == () and phases.snapshots == ()


def test_distances_equal_pymatgens_above_and_below_the_hull(
    phases: ReferencePhases, mu: dict[str, float]
) -> None:
    diagram = pymatgen_diagram(mu, TRAINING)
    above = {
        "a1": ("Sr3Ti2O7", -3.3),
        "a2": ("SrTi2O5", -3.2),
        "a3": ("Sr2TiO4", -3.25),
        "a4": ("Ti3O5", -2.9),
        "a5": ("SrTiO3", -3.45),
        "a6": ("Sr4Ti3O10", -3.0),
        "a7": ("SrTi", 0.1),
        "a8": ("O", 0.2),
    }
    below = {
        "b1": ("Sr3Ti2O7", -3.6),
        "b2": ("SrTi3O7", -3.7),
        "b3": ("Ti3O5", -3.3),
        "b4": ("SrO", -3.1),
    }
    candidates = [(i, f, e, e - 0.1, e + 0.1) for i, (f, e) in {**above, **below}.items()]
    table, failures = hull_stability(candidates, phases)
    assert failures == {}
    assert list(table.columns) == list(HULL_COLUMNS)
    assert list(table["id"]) == [c[0] for c in candidates]
    distance = rows(table, "pred_energy_above_hull")
    for i, (formula, energy) in above.items():
        expected = diagram.get_e_above_hull(total(formula, energy, mu))
        assert expected > 0
        assert distance[i] == pytest.approx(expected, abs=1e-9), formula
    for i, (formula, energy) in below.items():
        _, expected = diagram.get_decomp_and_e_above_hull(
            total(formula, energy, mu), allow_negative=True
        )
        assert expected < 0
        assert distance[i] == pytest.approx(expected, abs=1e-9), formula
    # by hand: a polymorph of a hull phase; and Sr3Ti2O7 = SrO + 2 SrTiO3 at -41/12 eV/atom
    assert distance["a5"] == pytest.approx(0.05, abs=1e-12)
    assert distance["b1"] == pytest.approx(-3.6 + 41 / 12, abs=1e-12)
    assert rows(table, "hull_energy_per_atom")["b1"] == pytest.approx(-41 / 12, abs=1e-12)


def test_random_compositions_match_pymatgen_distances_and_decompositions(
    phases: ReferencePhases, mu: dict[str, float]
) -> None:
    diagram = pymatgen_diagram(mu, TRAINING)
    rng = random.Random(7)
    candidates = []
    for n in range(300):
        sr, ti, o = rng.randint(0, 5), rng.randint(0, 5), rng.randint(0, 9)
        if sr + ti + o == 0:
            o = 1
        formula = "".join(f"{el}{k}" for el, k in (("Sr", sr), ("Ti", ti), ("O", o)) if k)
        energy = rng.uniform(-4.0, 0.5)
        candidates.append((f"c{n}", formula, energy, energy, energy))
    table, failures = hull_stability(candidates, phases)
    assert failures == {} and len(table) == 300
    for (i, formula, energy, _, _), row in zip(candidates, table.itertuples(), strict=True):
        assert row.id == i
        decomposition, expected = diagram.get_decomp_and_e_above_hull(
            total(formula, energy, mu), allow_negative=True
        )
        assert row.pred_energy_above_hull == pytest.approx(expected, abs=1e-9), formula
        got = dict(
            zip(
                row.competing_phases.split(" + "),
                map(float, row.competing_fractions.split(" + ")),
                strict=True,
            )
        )
        wanted = {e.composition.reduced_formula: amount for e, amount in decomposition.items()}
        assert got.keys() == wanted.keys(), formula
        for name, amount in wanted.items():
            assert got[name] == pytest.approx(amount, rel=1e-3), (formula, name)


def test_competing_phases_name_their_origins(
    phases: ReferencePhases, element_file: Path, mu: dict[str, float]
) -> None:
    candidates = [
        ("s2", "Sr2TiO4", -3.2, -3.3, -3.1),
        ("poly", "TiSrO3", -3.4, -3.5, -3.3),  # the A and B sites swapped: SrTiO3's composition
        ("alloy", "SrTi", 0.05, 0.0, 0.1),
        ("ox", "Ti3O5", -3.0, -3.1, -2.9),
    ]
    table, _ = hull_stability(candidates, phases)
    competing = rows(table, "competing_phases")
    origins = rows(table, "competing_origins")
    fractions = rows(table, "competing_fractions")
    assert competing["s2"] == "SrO + SrTiO3"
    assert origins["s2"] == "training:cmr:sro + training:cmr:sto"
    assert fractions["s2"] == "0.2857 + 0.7143"  # 2 of 7 atoms in SrO, 5 in SrTiO3
    assert (competing["poly"], origins["poly"], fractions["poly"]) == (
        "SrTiO3",
        "training:cmr:sto",
        "1",
    )
    assert rows(table, "pred_energy_above_hull")["poly"] == pytest.approx(0.1, abs=1e-12)
    assert (competing["alloy"], origins["alloy"]) == ("Sr + Ti", "elements + elements")
    assert competing["ox"] == "Ti2O3 + TiO2"
    # with the elements alone, a perovskite competes with the three elements
    bare = reference_phases(
        StabilitySpec(formation_energy="e", elements=element_file, training_phases=False),
        training=TRAINING,
    )
    table, _ = hull_stability([("p", "SrTiO3", -3.0, -3.2, -2.8)], bare)
    row = table.iloc[0]
    assert row["competing_phases"] == "Sr + Ti + O2"
    assert row["competing_origins"] == "elements + elements + elements"
    assert row["competing_fractions"] == "0.2 + 0.2 + 0.6"
    assert row["hull_energy_per_atom"] == pytest.approx(0.0, abs=1e-12)
    assert row["pred_energy_above_hull"] == pytest.approx(-3.0, abs=1e-12)


def test_a_candidates_own_record_is_not_in_its_hull(phases: ReferencePhases) -> None:
    # The training record cmr:sto passed as a candidate: without it, Sr2TiO4 is on the hull
    # and SrTiO3's composition is Sr2TiO4 + TiO2 at (7·(-3.3) + 3·(-3.4)) / 10 = -3.33
    # eV/atom; another SrTiO3 candidate still competes with cmr:sto.
    candidates = [("cmr:sto", "SrTiO3", -3.5, -3.6, -3.4), ("other", "SrTiO3", -3.5, -3.6, -3.4)]
    table, failures = hull_stability(candidates, phases)
    assert failures == {}
    own, other = table.iloc[0], table.iloc[1]
    assert own["hull_energy_per_atom"] == pytest.approx(-3.33, abs=1e-12)
    assert own["pred_energy_above_hull"] == pytest.approx(-0.17, abs=1e-12)
    assert own["competing_phases"] == "Sr2TiO4 + TiO2"
    assert own["competing_origins"] == "training:cmr:s2to + training:cmr:tio2"
    assert own["competing_fractions"] == "0.7 + 0.3"
    assert other["pred_energy_above_hull"] == pytest.approx(0.0, abs=1e-12)
    assert other["competing_origins"] == "training:cmr:sto"


def test_interval_shifts_by_the_hull_energy(phases: ReferencePhases) -> None:
    candidates = [
        ("a", "Sr3Ti2O7", -3.3, -3.55, -3.1),
        ("b", "SrTi2O5", -3.2, -3.3, -2.7),
        ("c", "TiO", -2.0, math.nan, math.nan),  # a model without intervals
    ]
    table, failures = hull_stability(candidates, phases)
    assert failures == {}
    for (_, _, energy, lower, upper), row in zip(candidates, table.itertuples(), strict=True):
        hull = row.hull_energy_per_atom
        assert row.pred_energy_above_hull == pytest.approx(energy - hull, abs=1e-12)
        if math.isnan(lower):
            assert math.isnan(row.lower_energy_above_hull)
            assert math.isnan(row.upper_energy_above_hull)
            continue
        assert row.lower_energy_above_hull == pytest.approx(lower - hull, abs=1e-12)
        assert row.upper_energy_above_hull == pytest.approx(upper - hull, abs=1e-12)
        width = row.upper_energy_above_hull - row.lower_energy_above_hull
        assert width == pytest.approx(upper - lower, abs=1e-12)
    assert rows(table, "hull_energy_per_atom")["a"] == pytest.approx(-41 / 12, abs=1e-12)
    assert rows(table, "lower_energy_above_hull")["a"] == pytest.approx(-3.55 + 41 / 12)


def test_per_cell_energies_are_divided_by_the_cells_atoms(phases: ReferencePhases) -> None:
    per_atom = [
        ("a", "SrTiO3", -3.45, -3.6, -3.3),
        ("b", "Sr2TiO4", -3.2, -3.3, -3.1),
        ("c", "TiO2", -3.0, -3.1, -2.9),
    ]
    # cells of 5, 14 (two formula units) and 12 (four formula units) atoms
    atoms = {"a": 5, "b": 14, "c": 12}
    per_cell = [(i, f, e * atoms[i], lo * atoms[i], hi * atoms[i]) for i, f, e, lo, hi in per_atom]
    expected, _ = hull_stability(per_atom, phases)
    got, failures = hull_stability(per_cell, phases, per_cell_atoms=atoms)
    assert failures == {}
    for column in HULL_COLUMNS[1:5]:
        assert np.allclose(got[column], expected[column], atol=1e-12, rtol=0), column
    for column in HULL_COLUMNS[5:]:
        assert list(got[column]) == list(expected[column]), column
    assert rows(got, "hull_energy_per_atom")["b"] == pytest.approx(-23.5 / 7, abs=1e-12)
    assert rows(got, "pred_energy_above_hull")["a"] == pytest.approx(0.05, abs=1e-12)
    # a candidate without an atom count is a failure, not a crash
    table, failures = hull_stability(per_cell, phases, per_cell_atoms={"a": 5, "b": 0})
    assert list(table["id"]) == ["a"]
    assert failures == {
        "b": "Sr2TiO4: no atom count of b for a per-cell energy",
        "c": "TiO2: no atom count of c for a per-cell energy",
    }


def test_bad_candidates_fail_one_by_one_and_the_others_get_values(
    phases: ReferencePhases,
) -> None:
    candidates = [
        ("ok1", "SrTiO3", -3.4, -3.5, -3.3),
        ("og", "OgTiO3", -2.0, -2.1, -1.9),
        ("garbled", "Sr(Ti", -2.0, -2.1, -1.9),
        ("nan", "TiO2", math.nan, -3.0, -2.0),
        ("text", "TiO2", "low", -3.0, -2.0),
        ("ok2", "SrO", -2.9, -3.0, -2.8),
    ]
    table, failures = hull_stability(candidates, phases)
    assert list(table["id"]) == ["ok1", "ok2"]
    assert rows(table, "pred_energy_above_hull") == pytest.approx({"ok1": 0.1, "ok2": 0.1})
    assert failures["og"] == "OgTiO3: no elemental reference entry for ['Og']"
    assert failures["garbled"].startswith("formula 'Sr(Ti' cannot be read")
    assert failures["nan"] == "TiO2: predicted formation energy is nan"
    assert failures["text"] == "TiO2: prediction 'low' is not a number"
    assert set(failures) == {"og", "garbled", "nan", "text"}


def test_duplicate_candidate_ids_are_refused(phases: ReferencePhases) -> None:
    with pytest.raises(ModelError, match="candidate id x appears twice"):
        hull_stability([("x", "SrO", -3, -3, -3), ("x", "TiO2", -3, -3, -3)], phases)


def test_no_candidates_give_an_empty_table(phases: ReferencePhases) -> None:
    table, failures = hull_stability([], phases)
    assert list(table.columns) == list(HULL_COLUMNS) and len(table) == 0 and failures == {}


def test_hulls_are_kept_for_the_next_chunk(phases: ReferencePhases) -> None:
    local = ReferencePhases(phases.elements, phases.phases)
    first, _ = hull_stability([("a", "Sr2TiO4", -3.2, -3.3, -3.1)], local)
    hulls = {key for key in local.cache if key != "index"}
    assert hulls == {("hull", ("O", "Sr", "Ti"), frozenset())}
    again, _ = hull_stability([("b", "Sr2TiO4", -3.2, -3.3, -3.1)], local)
    assert {key for key in local.cache if key != "index"} == hulls
    assert again["pred_energy_above_hull"][0] == first["pred_energy_above_hull"][0]


# --- reference phases: training records and entry files -----------------------------------------


def test_training_phases_skip_records_without_energy(element_file: Path) -> None:
    spec = StabilitySpec(formation_energy="heat", per="cell", elements=element_file)
    training = [("SrTiO3", -3.5, "cmr:1"), ("TiO2", math.nan, "cmr:2"), ("Sr(Ti", -3.0, "cmr:3")]
    phases = reference_phases(spec, training)
    learned = {p.origin: p.formation_energy_per_atom for p in phases.phases if p.record_id}
    assert learned == {"training:cmr:1": -3.5}
    assert phases.skipped == (
        "training:cmr:2 (TiO2): formation energy is nan",
        "training:cmr:3 (Sr(Ti): formula cannot be read",
    )
    no_file = StabilitySpec(formation_energy="e")
    with pytest.raises(ModelError, match="no elemental reference file"):
        reference_phases(no_file)


def entry_dicts(mu: dict[str, float]) -> list[dict]:
    sro = Structure(Lattice.cubic(5.16), ["Sr", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return [
        ComputedEntry(
            "SrTiO3", 5 * -3.5 + mu["Sr"] + mu["Ti"] + 3 * mu["O"], entry_id="x-1"
        ).as_dict(),
        PDEntry(Composition("Ti2O3"), 5 * -3.1 + 2 * mu["Ti"] + 3 * mu["O"]).as_dict(),
        ComputedStructureEntry(sro, 2 * -3.0 + mu["Sr"] + mu["O"], entry_id="x-3").as_dict(),
    ]


def test_entry_files_become_formation_energies(
    element_file: Path, mu: dict[str, float], tmp_path: Path
) -> None:
    path = tmp_path / "my_entries.json.gz"
    with gzip.open(path, "wt") as handle:
        json.dump(entry_dicts(mu), handle)
    spec = StabilitySpec(
        formation_energy="e", elements=element_file, training_phases=False, entries=[path]
    )
    phases = reference_phases(spec, training=TRAINING)
    found = [p for p in phases.phases if p.origin != "elements"]
    assert [(p.formula, p.origin, p.record_id) for p in found] == [
        ("SrTiO3", "file:my_entries.json.gz", "x-1"),
        ("Ti2O3", "file:my_entries.json.gz", None),
        ("SrO", "file:my_entries.json.gz", "x-3"),
    ]
    assert [p.formation_energy_per_atom for p in found] == pytest.approx([-3.5, -3.1, -3.0])
    table, _ = hull_stability([("c", "Sr2TiO4", -3.2, -3.3, -3.1)], phases)
    assert table["competing_phases"][0] == "SrO + SrTiO3"
    assert table["competing_origins"][0] == "file:my_entries.json.gz + file:my_entries.json.gz"


def og_entry() -> dict:
    with warnings.catch_warnings():  # pymatgen: Og has no Pauling electronegativity
        warnings.simplefilter("ignore")
        return ComputedEntry("OgO", -5.0, entry_id="og-1").as_dict()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"@class": "ComputedEntry", "composition": {"Sr": 1.0}}, r"ComputedEntry cannot be built"),
        ({"@class": "Structure", "lattice": {}}, r"not an entry dict \(@class 'Structure'"),
        ("SrO", r"not an entry dict \(str"),
        (og_entry, r"entry 2 \(og-1\): no elemental reference entry for \['Og'\]"),
    ],
    ids=["no-energy", "not-an-entry", "not-a-dict", "no-reference"],
)
def test_a_bad_entry_is_an_error_naming_the_file_and_entry(
    bad: object, message: str, element_file: Path, mu: dict[str, float], tmp_path: Path
) -> None:
    path = tmp_path / "refs.json"
    path.write_text(json.dumps([entry_dicts(mu)[0], bad() if callable(bad) else bad]))
    spec = StabilitySpec(formation_energy="e", elements=element_file, entries=[path])
    with pytest.raises(ModelError, match=message) as caught:
        reference_phases(spec)
    assert str(caught.value).startswith(f"{path}: entry 2")


def test_an_entry_file_that_is_not_a_list_is_refused(element_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "refs.json"
    path.write_text('{"entries": []}')
    spec = StabilitySpec(formation_energy="e", elements=element_file, entries=[path])
    with pytest.raises(ModelError, match=f"{path}: expected a JSON list of entry dicts"):
        reference_phases(spec)
    path.write_text("[{")
    with pytest.raises(ModelError, match=f"{path}: cannot read entry file"):
        reference_phases(spec)


def test_chemical_systems_list_every_sub_system() -> None:
    items = ["BaTiO3", "TiBaO3", "O-Sr", "Sr", "Sr(Ti", "OgO", "Og-O"]
    assert chemical_systems(items, ["Ba", "O", "Ti", "Sr"]) == [
        "Ba",
        "O",
        "Sr",
        "Ti",
        "Ba-O",
        "Ba-Ti",
        "O-Sr",
        "O-Ti",
        "Ba-O-Ti",
    ]
    assert chemical_systems(["Og-O"]) == ["O", "Og", "O-Og"]


def test_hulls_are_pymatgens_phase_diagrams_facet_for_facet(element_file: Path) -> None:
    # The hull of each system is built on plain arrays; it must be exactly the one
    # pymatgen's PhaseDiagram builds from the same entries (same points, facets in the
    # same order, same owners): random compounds, ties in energy and composition, phases
    # above the elements' plane, polymorphs, on 1- to 4-element systems.
    from itertools import combinations as subsets

    from matscreen.tasks.models import hull

    rng = random.Random(7)
    elements = ["Sr", "Ti", "O", "N", "Ba", "La"]
    formulas = ["SrO", "TiO2", "SrTiO3", "Sr2TiO4", "TiN", "LaN", "BaO", "BaTiO3", "LaTiO2N",
                "SrTiO2N", "Ba2TiO4", "La2O3", "TiO", "Ti2O3", "SrO2", "BaO2", "Sr3Ti2O7",
                "SrN2", "Ti3N4", "BaLaO2N"]  # fmt: skip
    known = []
    for k, formula in enumerate(formulas):
        energy = round(rng.uniform(-3.6, 0.4), 2)  # rounded: ties happen
        known.append((formula, energy, f"t:{k}"))
        if k % 4 == 0:  # a polymorph, sometimes of equal energy
            known.append((formula, energy + rng.choice([0.0, 0.1]), f"t:{k}b"))
    spec = StabilitySpec(formation_energy="formation_energy_per_atom", elements=element_file)
    phases = reference_phases(spec, known)
    index = hull.phase_index(phases)
    compared = 0
    for size in range(1, 5):
        for system in subsets(elements, size):
            members = [
                i
                for n in range(1, size + 1)
                for sub in subsets(system, n)
                for i in index.by_system.get(frozenset(sub), ())
            ]
            entries = [
                PDEntry(
                    index.compositions[i],
                    phases.phases[i].formation_energy_per_atom * index.compositions[i].num_atoms,
                    name=index.names[i],
                    attribute=i,
                )
                for i in members
            ]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                diagram = PhaseDiagram(entries, elements=[Element(e) for e in system])
            data, facets, owners = hull._lower_hull(phases, index, system, members)
            expected = np.asarray(diagram.facets, dtype=int).reshape(len(diagram.facets), size)
            assert np.array_equal(facets, expected), system
            assert np.array_equal(data, np.asarray(diagram.qhull_data)[:-1]), system
            assert [int(o) for o in owners] == [e.attribute for e in diagram.qhull_entries]
            compared += 1
    assert compared == 6 + 15 + 20 + 15


def test_chunks_tables_share_their_competing_texts(phases: ReferencePhases) -> None:
    # Two chunks' tables, as unpickled from a worker: equal texts are distinct objects
    # until shared_texts holds each once.
    chunks = [
        pickle.loads(pickle.dumps(hull_stability([(i, "Sr2TiO4", -3, -3.2, -2.8)], phases)[0]))
        for i in ("p", "q")
    ]
    first, second = (shared_texts(table) for table in chunks)
    for column in COMPETING_COLUMNS:
        assert chunks[0][column].iloc[0] is not chunks[1][column].iloc[0]
        assert first[column].iloc[0] is second[column].iloc[0]
    assert first.drop(columns="id").equals(chunks[0].drop(columns="id"))
