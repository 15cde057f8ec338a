"""Element properties by site role: the right sites, the same features relaxed or decorated."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies

from matscreen.tasks.errors import FeaturizationError
from matscreen.tasks.featurize import featurization_config, featurize_batch, preset_config
from matscreen.tasks.featurize.site_roles import SiteRoleProperty, anion_symbols
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.sources.csv_cif import parse_cif
from matscreen.tasks.spec import (
    CampaignSpec,
    FeaturizationSpec,
    PrototypeSourceSpec,
    choose_preset,
    load_spec,
)


@pytest.fixture(scope="module")
def cmr(perovskite_csv: Path) -> pd.DataFrame:
    frame = pd.read_csv(perovskite_csv, nrows=400)
    frame["structure"] = [parse_cif(cif, f"row {i}") for i, cif in enumerate(frame.cif)]
    return frame


def _role_elements(structure: Structure) -> tuple[set[str], set[str], list[str]]:
    large, small, anion, settled = SiteRoleProperty().roles(structure)
    assert settled
    symbols = [site.specie.symbol for site in structure]
    pick = lambda mask: [s for s, m in zip(symbols, mask, strict=True) if m]  # noqa: E731
    return set(pick(large)), set(pick(small)), sorted(pick(anion))


def test_the_roles_of_relaxed_cmr_perovskites_are_a_b_and_x(cmr: pd.DataFrame) -> None:
    # The CMR formula is written A B X3. The relaxed cells are far from ideal (sites
    # shifted by up to a third of the cell along one axis), and their CIFs list A and B in
    # either order. In a few the two cations have equally near anions and the next ones
    # decide (FeKO3 of the first 400: K is then the large one).
    agree = differ = 0
    for formula, structure in zip(cmr.formula, cmr.structure, strict=True):
        a, b = re.findall("[A-Z][a-z]?", formula)[:2]
        large, small, anions = _role_elements(structure)
        assert len(anions) == 3 and not {a, b} & set(anions), formula
        if a != b:
            agree += (large, small) == ({a}, {b})
            differ += (large, small) != ({a}, {b})
    assert agree > 380 and differ <= 2


def test_a_relaxed_cell_and_its_decoration_get_the_same_features(cmr: pd.DataFrame) -> None:
    featurizer = SiteRoleProperty()
    pairs = 0
    for formula, structure in list(zip(cmr.formula, cmr.structure, strict=True))[:60]:
        a, b = re.findall("[A-Z][a-z]?", formula)[:2]
        if a == b:
            continue
        x = Composition({e: n for e, n in structure.composition.items() if str(e) not in (a, b)})
        source = PrototypeSourceSpec(
            kind="prototypes",
            name="d",
            prototype="perovskite_ABX3",
            sites={"A": [a], "B": [b], "X": [_group(x)]},
            charge_neutral=False,
        )
        records = read_source(source).records
        if not records:  # no radius to set the lattice
            continue
        decorated = Structure.from_dict(records[0].structure)
        assert decorated.volume != pytest.approx(structure.volume)
        np.testing.assert_allclose(  # the same up to the order of summing the anions
            featurizer.featurize(decorated), featurizer.featurize(structure), rtol=1e-12
        )
        pairs += 1
    assert pairs >= 50


def _group(composition: Composition) -> str:
    """An anion group as the prototypes source writes it (O2N, ONF, N3)."""
    return "".join(
        f"{e}{int(n) if n != 1 else ''}" for e, n in sorted(composition.items(), key=str)
    )


def test_features_name_every_role_and_the_fraction_of_anions() -> None:
    featurizer = SiteRoleProperty(properties=["Number", "Electronegativity"])
    structure = Structure(
        Lattice.cubic(3.9),
        ["Sr", "Ti", "O", "O", "N"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    values = dict(zip(featurizer.feature_labels(), featurizer.featurize(structure), strict=True))
    assert values["Number at large cation sites"] == 38
    assert values["Number at small cation sites"] == 22
    assert values["Number at anion sites"] == pytest.approx((8 + 8 + 7) / 3)
    assert values["Number range at anion sites"] == 1
    assert values["anion site fraction"] == pytest.approx(0.6)
    # No distance enters: the same cell at another scale has the same features.
    assert featurizer.featurize(structure) == featurizer.featurize(
        Structure(Lattice.cubic(5.1), structure.species, structure.frac_coords)
    )


@pytest.mark.parametrize(
    ("symbols", "anions"),
    [
        ({"Ba", "Ti", "O"}, {"O"}),
        ({"Te", "Ba", "O", "S"}, {"O", "S"}),  # Te as a cation beside oxygen and sulfur
        ({"Cd", "Te"}, {"Te"}),  # no element of the set: the most electronegative
        ({"Al", "Fe"}, {"Fe"}),
        ({"O"}, {"O"}),
        ({"Cu"}, {"Cu"}),
    ],
)
def test_anions_by_element(symbols: set[str], anions: set[str]) -> None:
    assert anion_symbols(frozenset(symbols)) == anions


def test_an_elemental_solid_has_every_site_in_every_role() -> None:
    featurizer = SiteRoleProperty(properties=["Number"])
    copper = Structure(
        Lattice.cubic(3.6), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    )
    assert featurizer.featurize(copper) == [29.0, 29.0, 29.0, 0.0, 1.0]


def test_disordered_sites_take_weighted_properties_and_dummies_are_refused() -> None:
    featurizer = SiteRoleProperty(properties=["Number"])
    mixed = Structure(
        Lattice.cubic(4.0),
        [{"Sr": 0.5, "Ba": 0.5}, "Ti", {"O": 0.5, "F": 0.5}],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    )
    assert featurizer.featurize(mixed) == [47.0, 22.0, 8.5, 0.0, pytest.approx(1 / 3)]
    vacancy = Structure(Lattice.cubic(4.0), [{"Na": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert featurizer.featurize(vacancy)[:3] == [11.0, 11.0, 17.0]
    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="not an element"):
        featurizer.featurize(dummy)
    with pytest.raises(ValueError, match="unknown Magpie properties"):
        SiteRoleProperty(properties=["Number", "Colour"])
    # Through the batch: one failure naming the record, the others computed.
    good = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    batch = featurize_batch(
        [("good", good.as_dict()), ("dummy", dummy.as_dict())], preset_config("sites")
    )
    assert batch.ids == ["good"]
    assert list(batch.failures) == ["dummy"]


def test_the_preset_is_chosen_from_what_is_screened() -> None:
    assert choose_preset(["prototypes"])[0] == "sites"
    assert choose_preset(["optimade", "files"])[0] == "sites"
    assert choose_preset(["optimade", "mp"])[0] == "relaxed"
    assert choose_preset([])[0] == "relaxed"


def test_a_campaign_spec_resolves_auto_and_says_why(data_dir: Path) -> None:
    demo = Path(__file__).parents[2] / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"
    spec = load_spec(demo, data_dir)
    assert spec.featurization.preset == "sites"
    assert "prototypes" in spec.featurization.chosen_because
    # Without the screened decorations nothing is screened: the relaxed geometry is used.
    raw = spec.model_dump()
    raw["sources"] = raw["sources"][:1]
    raw["featurization"] = {}
    assert CampaignSpec.model_validate(raw).featurization.preset == "relaxed"
    # A preset the spec names is kept, with no reason given.
    raw["featurization"] = {"preset": "fast"}
    kept = CampaignSpec.model_validate(raw).featurization
    assert (kept.preset, kept.chosen_because) == ("fast", "")


def test_a_listed_featurizer_is_checked_against_the_chosen_preset(data_dir: Path) -> None:
    demo = Path(__file__).parents[2] / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"
    raw = load_spec(demo, data_dir).model_dump()
    raw["sources"] = raw["sources"][:1]  # nothing screened: "relaxed", which has it
    raw["featurization"] = {
        "featurizers": [
            {"input": "structure", "cls": "matscreen.tasks.featurize.site_roles.SiteRoleProperty"}
        ]
    }
    with pytest.raises(Exception, match="repeats .* feature labels of the preset 'relaxed'"):
        CampaignSpec.model_validate(raw)


def test_an_unresolved_auto_preset_is_not_featurized() -> None:
    with pytest.raises(FeaturizationError, match="auto"):
        featurization_config(FeaturizationSpec())
    with pytest.raises(Exception, match="unknown preset 'fastest'"):
        FeaturizationSpec(preset="fastest")
