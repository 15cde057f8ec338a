"""Featurization: same numbers as matminer's own featurize_dataframe; failures isolated."""

from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure

from matscreen.tasks.featurize import (
    FeatureTable,
    featurize_batch,
    join_batches,
    preset_config,
    preset_hash,
)
from matscreen.tasks.sources.csv_cif import parse_cif


@pytest.fixture(scope="module")
def structures(perovskite_csv: Path) -> list[Structure]:
    frame = pd.read_csv(perovskite_csv, nrows=40)
    return [parse_cif(cif, f"row {i}") for i, cif in enumerate(frame.cif, start=1)]


def _matminer_reference(structures: list[Structure]) -> pd.DataFrame:
    """The fast preset computed by matminer's own featurize_dataframe, featurizer by featurizer."""
    frame = pd.DataFrame(
        {"structure": structures, "composition": [s.composition for s in structures]}
    )
    columns = []
    for config in preset_config("fast")["featurizers"]:
        module, _, name = config["cls"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        featurizer = (
            cls.from_preset(config["from_preset"], **config["kwargs"])
            if config["from_preset"]
            else cls(**config["kwargs"])
        )
        featurizer.set_n_jobs(1)
        out = featurizer.featurize_dataframe(
            frame[[config["input"]]].copy(), config["input"], pbar=False
        )
        columns.append(out.drop(columns=[config["input"]]))
    return pd.concat(columns, axis=1).astype(float)


def test_values_equal_matminers_featurize_dataframe(structures: list[Structure]) -> None:
    items = [(f"cmr:{i}", s.as_dict()) for i, s in enumerate(structures)]
    batch = featurize_batch(items, preset_config("fast"))
    reference = _matminer_reference(structures)

    assert batch.failures == {}
    assert batch.labels == list(reference.columns)
    assert batch.values.shape == (40, reference.shape[1])
    np.testing.assert_allclose(batch.values, reference.to_numpy(), rtol=1e-12, equal_nan=True)


def test_a_structure_that_breaks_a_featurizer_becomes_an_error_row(structures) -> None:
    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5] * 3])
    items = [
        ("a:1", structures[0].as_dict()),
        ("a:2", dummy.as_dict()),
        ("a:3", structures[1].as_dict()),
        ("a:4", {"not": "a structure"}),
    ]
    batch = featurize_batch(items, preset_config("fast"))
    assert batch.ids == ["a:1", "a:3"]
    assert set(batch.failures) == {"a:2", "a:4"}
    assert batch.failures["a:2"].startswith("ElementProperty failed: KeyError")
    assert "not a structure" in batch.failures["a:4"]
    assert not np.isnan(batch.values).all(axis=1).any()


def test_joined_table_round_trips_through_parquet(structures) -> None:
    items = [(f"cmr:{i}", s.as_dict()) for i, s in enumerate(structures[:12])]
    table = join_batches(
        [
            featurize_batch(items[6:], preset_config("fast")),
            featurize_batch(items[:6], preset_config("fast")),
        ]
    )
    assert list(table.frame.index) == sorted(i for i, _ in items)
    back = FeatureTable.from_parquet_bytes(table.to_parquet_bytes())
    pd.testing.assert_frame_equal(back.frame, table.frame)


def test_preset_description_is_hashed_with_versions() -> None:
    config = preset_config("fast")
    assert set(config["versions"]) == {"matminer", "pymatgen", "numpy"}
    assert [f["cls"].rsplit(".", 1)[1] for f in config["featurizers"]] == [
        "ElementProperty",
        "Stoichiometry",
        "ValenceOrbital",
        "IonProperty",
        "DensityFeatures",
        "GlobalSymmetryFeatures",
    ]
    assert preset_hash("fast") == preset_hash("fast") and len(preset_hash("fast")) == 64


def _slow_config() -> dict:
    """Only MaximumPackingEfficiency: about 40 ms per site, so big cells take seconds."""
    config = preset_config("fast")
    config["featurizers"] = [
        {
            "input": "structure",
            "cls": "matminer.featurizers.structure.MaximumPackingEfficiency",
            "from_preset": None,
            "kwargs": {},
        }
    ]
    return config


def test_time_limit_stops_one_structure_and_the_batch_goes_on(structures) -> None:
    big = structures[0].copy()
    big.make_supercell([4, 4, 4])  # 320 sites: many seconds of Voronoi tessellation
    items = [
        ("small-1", structures[1].as_dict()),
        ("big", big.as_dict()),
        ("small-2", structures[2].as_dict()),
    ]
    started = time.perf_counter()
    batch = featurize_batch(items, _slow_config(), time_limit_s=2.0)
    elapsed = time.perf_counter() - started

    assert batch.ids == ["small-1", "small-2"]
    assert batch.failures == {"big": "time limit of 2 s exceeded"}
    # Two child starts (the second after the kill) and two small cells, but not the big one.
    assert elapsed < 60
    in_process = featurize_batch([items[0], items[2]], _slow_config())
    np.testing.assert_array_equal(batch.values, in_process.values)


def test_child_process_gives_the_same_values_and_errors(structures) -> None:
    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5] * 3])
    items = [("a", structures[3].as_dict()), ("b", dummy.as_dict()), ("c", {"no": 1})]
    child = featurize_batch(items, preset_config("fast"), time_limit_s=60)
    local = featurize_batch(items, preset_config("fast"))
    assert child.ids == local.ids == ["a"]
    assert child.failures == local.failures
    np.testing.assert_array_equal(child.values, local.values)


def test_site_resolved_features_name_each_kind_of_site_and_key_the_store() -> None:
    from matscreen.tasks.featurize import featurization_config
    from matscreen.tasks.featurize.site_resolved import CoordinationElementProperty
    from matscreen.tasks.spec import FeaturizationSpec

    srtio3 = Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    featurizer = CoordinationElementProperty(properties=["Number"])
    values = dict(zip(featurizer.feature_labels(), featurizer.featurize(srtio3), strict=True))
    # Sr is 12-fold (A site), Ti 6-fold (B site), O 2-fold (X site). The effective
    # coordination number of Sr counts its 12 O and, weakly, the 8 Ti beyond them (13).
    assert (values["CN maximum"], values["CN minimum"]) == (13, 2)
    assert values["Number at highest-CN sites"] == 38
    assert values["Number at intermediate-CN sites"] == 22
    assert values["Number at lowest-CN sites"] == 8
    crystalnn = CoordinationElementProperty(properties=["Number"], coordination="crystalnn")
    by_crystalnn = dict(zip(crystalnn.feature_labels(), crystalnn.featurize(srtio3), strict=True))
    assert (by_crystalnn["CN maximum"], by_crystalnn["CN minimum"]) == (12, 2)
    # A relaxed-looking cell (Sr moved off its ideal site, the lattice 3 % larger) has the
    # same kinds of site as the ideal one.
    moved = Structure(
        Lattice.cubic(4.02),
        ["Sr", "Ti", "O", "O", "O"],
        [[0.06, 0, 0], [0.52, 0.5, 0.5], [0.48, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    again = dict(zip(featurizer.feature_labels(), featurizer.featurize(moved), strict=True))
    for role in ("highest", "intermediate", "lowest"):
        assert again[f"Number at {role}-CN sites"] == values[f"Number at {role}-CN sites"]
    with pytest.raises(ValueError, match="coordination must be"):
        CoordinationElementProperty(coordination="voronoi")
    # A structure with two kinds of site has no intermediate one.
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    values = dict(zip(featurizer.feature_labels(), featurizer.featurize(cscl), strict=True))
    assert np.isnan(values["Number at intermediate-CN sites"])
    # The class's revision is part of the feature store's key.
    spec = FeaturizationSpec(
        preset="fast",
        featurizers=[
            {
                "input": "structure",
                "cls": "matscreen.tasks.featurize.site_resolved.CoordinationElementProperty",
            }
        ],
    )
    described = featurization_config(spec)["featurizers"][-1]
    assert described["revision"] == CoordinationElementProperty.REVISION


def test_memory_limit_stops_one_structure_and_the_batch_goes_on(
    structures, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child imports the featurizer from tests/support; its limit comes with the
    # featurization (flows pass MATSCREEN_FEATURIZER_MEMORY_MB).
    support = Path(__file__).resolve().parents[1] / "support"
    monkeypatch.setenv("PYTHONPATH", str(support))
    config = preset_config("fast")
    config["featurizers"] = [
        {
            "input": "structure",
            "cls": "hungry_featurizer.MemoryPerSite",
            "from_preset": None,
            "kwargs": {"megabytes_per_site": 100},
        }
    ]
    big = structures[0].copy()
    big.make_supercell([2, 2, 1])  # 20 sites: 2 GiB, over the limit; 5 sites fit
    items = [
        ("small-1", structures[1].as_dict()),
        ("big", big.as_dict()),
        ("small-2", structures[2].as_dict()),
    ]
    batch = featurize_batch(items, config, time_limit_s=120, memory_mb=1024)
    assert batch.ids == ["small-1", "small-2"]
    np.testing.assert_array_equal(batch.values, [[5.0], [5.0]])
    assert batch.failures == {"big": "memory limit of 1024 MiB exceeded"}
