"""The array path gives the featurizers' own values, on real and on decorated structures.

Every comparison featurizes the same items twice: with the array path, and row by row
through the featurizer objects (``arrays=False``), which ``test_featurize.py`` checks
against matminer's ``featurize_dataframe``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Species, Structure

from matscreen.tasks.featurize import featurization_config, featurize_batch, preset_config
from matscreen.tasks.featurize.arrays import featurize_cells, read_cells, supports
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.sources.csv_cif import parse_cif
from matscreen.tasks.spec import FeaturizationSpec, PrototypeSourceSpec

#: The demo campaign's featurization: the fast preset and site-resolved Magpie properties.
SITE_PROPERTIES = ["Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
                   "CovalentRadius", "Electronegativity", "NsValence", "NpValence",
                   "NdValence", "NfValence", "NValence", "NsUnfilled", "NpUnfilled",
                   "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap",
                   "GSmagmom", "SpaceGroupNumber"]  # fmt: skip

METALS = ["Li", "Be", "B", "Na", "Mg", "Al", "Si", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn",
          "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Rb", "Sr", "Y", "Zr", "Nb", "Mo",
          "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "Cs", "Ba", "La", "Hf", "Ta",
          "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi"]  # fmt: skip


@pytest.fixture(scope="module")
def demo_config() -> dict[str, Any]:
    spec = FeaturizationSpec.model_validate(
        {
            "preset": "fast",
            "featurizers": [
                {
                    "input": "structure",
                    "cls": "matscreen.tasks.featurize.site_resolved.CoordinationElementProperty",
                    "kwargs": {"properties": SITE_PROPERTIES},
                }
            ],
        }
    )
    return featurization_config(spec)


def assert_same(items: list[tuple[str, dict[str, Any]]], config: dict[str, Any]) -> Any:
    """Featurize with and without the array path; assert the same rows, values, failures."""
    fast = featurize_batch(items, config)
    plain = featurize_batch(items, config, arrays=False)
    assert fast.ids == plain.ids
    assert fast.labels == plain.labels
    assert fast.failures == plain.failures
    np.testing.assert_allclose(fast.values, plain.values, rtol=1e-9, atol=0, equal_nan=True)
    return fast


def decorations(prototype: str, sites: dict[str, list[str]]) -> list[tuple[str, dict]]:
    source = PrototypeSourceSpec(kind="prototypes", name="d", prototype=prototype, sites=sites)
    return [(r.source_id, r.structure) for r in read_source(source).records]


@pytest.mark.slow
def test_real_structures_from_every_shared_dataset(
    data_dir: Path, perovskite_csv: Path, demo_config: dict[str, Any]
) -> None:
    frame = pd.read_csv(perovskite_csv, nrows=150)
    items = [(f"cmr:{i}", parse_cif(cif, f"row {i}").as_dict()) for i, cif in enumerate(frame.cif)]
    for name in ("mp2018_subset_100.jsonl", "summary_200.jsonl"):
        lines = (data_dir / "materials_project" / name).read_text().splitlines()
        items += [(f"{name}:{i}", json.loads(line)["structure"]) for i, line in enumerate(lines)]
    taken, _ = featurize_cells([d for _, d in items], demo_config)
    assert len(taken) > 300  # most real structures go the array way
    assert_same(items, demo_config)
    assert_same(items, preset_config("fast"))
    assert_same(items, preset_config("relaxed"))  # holds every featurizer of "sites"


@pytest.mark.slow
def test_decorated_perovskites_of_every_anion_group(demo_config: dict[str, Any]) -> None:
    items = decorations(
        "perovskite_ABX3",
        {"A": METALS, "B": METALS, "X": ["O3", "O2N", "ON2", "N3", "F3", "OF2", "OFN"]},
    )
    # Every anion group and the largest and smallest cells, plus a random sample.
    volumes = [abs(np.linalg.det(d["lattice"]["matrix"])) for _, d in items]
    order = np.argsort(volumes)
    chosen = (
        set(order[:60]) | set(order[-60:]) | set(random.Random(7).sample(range(len(items)), 600))
    )
    sample = [items[i] for i in sorted(chosen)]
    taken, _ = featurize_cells([d for _, d in sample], demo_config)
    assert len(taken) >= 0.95 * len(sample)
    assert_same(sample, demo_config)
    assert_same(sample, preset_config("relaxed"))


@pytest.mark.parametrize(
    ("prototype", "sites"),
    [
        ("rocksalt_AX", {"A": METALS[:30], "X": ["O", "S", "F", "Cl", "N"]}),
        ("zincblende_AX", {"A": METALS[:30], "X": ["O", "S", "Se", "N", "P"]}),
        ("fluorite_AX2", {"A": METALS, "X": ["F", "O", "Cl"]}),
    ],
)
def test_other_prototypes(prototype: str, sites: dict, demo_config: dict[str, Any]) -> None:
    assert_same(decorations(prototype, sites), demo_config)
    assert_same(decorations(prototype, sites), preset_config("relaxed"))


def _perovskite(a: float, shift: float = 0.0, species: tuple[str, ...] = ("Sr", "Ti")) -> Structure:
    return Structure(
        Lattice.cubic(a),
        [*species, "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5 + shift], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def test_a_cell_near_the_symmetry_tolerance_is_not_shared_across_scales(
    demo_config: dict[str, Any],
) -> None:
    # Ti moved off centre by 0.0015 of the cell: within spglib's 0.01 Å at 3-6 Å, not at
    # 8-12 Å. Same family key at every scale; the space group must follow the scale.
    items = [(f"a{a}", _perovskite(a, shift=0.0015).as_dict()) for a in np.linspace(3.2, 12, 23)]
    result = assert_same(items, demo_config)
    groups = set(result.values[:, result.labels.index("spacegroup_num")])
    assert groups == {221.0, 99.0}


def test_coordination_follows_the_neighbours_inside_the_cutoff(demo_config: dict[str, Any]) -> None:
    # From 3 to 9 Å neighbour shells cross the 6 Å cutoff one after another.
    items = [(f"a{a:.2f}", _perovskite(a).as_dict()) for a in np.linspace(3.0, 9.0, 61)]
    assert_same(items, demo_config)
    # Cells too small for the kept shells, one batch each: nothing carries over between them.
    for a in (2.2, 2.5, 2.8):
        assert_same([("small", _perovskite(a).as_dict())], demo_config)


def test_rows_the_array_path_cannot_take_keep_their_own_values_and_errors(
    demo_config: dict[str, Any],
) -> None:
    ordered = _perovskite(3.9)
    disordered = ordered.copy()
    disordered.replace_species({"Sr": {"Sr": 0.5, "Ba": 0.5}})
    oxidized = ordered.copy()
    oxidized.add_oxidation_state_by_element({"Sr": 2, "Ti": 4, "O": -2})
    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with_magmom = ordered.copy()
    with_magmom.add_site_property("magmom", [0, 1, 0, 0, 0])
    lonely = Structure(Lattice.cubic(30.0), ["Na"], [[0, 0, 0]])  # no neighbour in 6 Å
    malformed = ordered.as_dict()
    malformed["sites"][1]["abc"] = ["x", 0, 0]
    items = [
        ("ordered", ordered.as_dict()),
        ("disordered", disordered.as_dict()),
        ("oxidized", oxidized.as_dict()),
        ("dummy", dummy.as_dict()),
        ("magmom", with_magmom.as_dict()),
        ("lonely", lonely.as_dict()),
        ("malformed", malformed),
        ("ion", Structure(Lattice.cubic(3.0), [Species("Na", 1)], [[0, 0, 0]]).as_dict()),
    ]
    taken, _ = featurize_cells([d for _, d in items], demo_config)
    assert [items[i][0] for i in taken] == ["ordered", "magmom"]
    result = assert_same(items, demo_config)
    assert set(result.failures) == {"disordered", "dummy", "lonely", "malformed"}
    assert "Disordered structure support not built yet" in result.failures["disordered"]
    assert "site 0 (Na) has no neighbour within 6 Å" in result.failures["lonely"]


def test_featurizations_without_array_implementations_go_row_by_row(
    perovskite_csv: Path,
) -> None:
    config = preset_config("structure")  # CrystalNN fingerprints have no array form
    assert not supports(config)
    frame = pd.read_csv(perovskite_csv, nrows=4)
    items = [(f"cmr:{i}", parse_cif(cif, "").as_dict()) for i, cif in enumerate(frame.cif)]
    rows, values = featurize_cells([d for _, d in items], config)
    assert rows == [] and values.size == 0
    assert_same(items, config)


def test_empty_batch_and_family_keys_ignore_scale_but_not_arrangement() -> None:
    assert read_cells([]).rows == []
    cells = read_cells(
        [
            _perovskite(3.9).as_dict(),
            _perovskite(4.4).as_dict(),
            _perovskite(4.4, species=("Ti", "Sr")).as_dict(),  # same pattern: same family
            _perovskite(4.0, species=("Sr", "Sr")).as_dict(),  # another pattern
        ]
    )
    assert cells.families[0] == cells.families[1] == cells.families[2]
    assert cells.families[3] != cells.families[0]
    assert cells.elements.tolist()[0] == [8, 22, 38]
    assert cells.amounts.tolist()[0] == [3.0, 1.0, 1.0]


def test_threads_sharing_the_family_cache_get_the_same_rows(demo_config: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    items = [(f"a{a:.2f}", _perovskite(a, species=s).as_dict())
             for a in np.linspace(3.6, 5.0, 15) for s in (("Sr", "Ti"), ("Ba", "Zr"))]  # fmt: skip
    expected = featurize_batch(items, demo_config, arrays=False)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: featurize_batch(items, demo_config), range(8)))
    for result in results:
        assert result.ids == expected.ids
        np.testing.assert_allclose(result.values, expected.values, rtol=1e-9, equal_nan=True)
