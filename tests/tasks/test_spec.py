"""Campaign specs: the demo spec loads; every kind of mistake is named by its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matscreen.flows.cli import DEFAULT_SPEC
from matscreen.flows.settings import REPOSITORY_ROOT
from matscreen.tasks.errors import SpecError
from matscreen.tasks.spec import load_spec


def test_demo_spec_loads_with_data_dir_substituted(data_dir: Path) -> None:
    spec = load_spec(DEFAULT_SPEC, data_dir)
    source = spec.sources[0]
    assert source.path == (data_dir / "perovskites_cmr" / "cubic_perovskites.csv").resolve()
    assert source.properties["band_gap"].max_of == ["dir_gap", "ind_gap"]
    assert [c.property for c in spec.criteria] == ["heat_of_formation", "band_gap"]
    assert spec.criteria[1].min == 1.4 and spec.criteria[1].max == 3.1
    assert spec.criteria[0].max == 0.21
    assert len(spec.fingerprint()) == 64
    assert spec.fingerprint() == load_spec(DEFAULT_SPEC, data_dir).fingerprint()


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def demo_data() -> dict:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def test_unknown_key_is_named_with_its_path(tmp_path, data_dir, demo_data) -> None:
    demo_data["sources"][0]["colour"] = "blue"
    with pytest.raises(SpecError, match=r"sources\.0\.colour: unknown key"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_wrong_type_is_named_with_its_path(tmp_path, data_dir, demo_data) -> None:
    demo_data["split"]["test_fraction"] = "a fifth"
    with pytest.raises(SpecError, match=r"split\.test_fraction: .*'a fifth'"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_missing_file_is_named_with_key_and_path(tmp_path, data_dir, demo_data) -> None:
    demo_data["sources"][0]["path"] = "${data_dir}/perovskites_cmr/nope.csv"
    with pytest.raises(SpecError, match=r"sources\.0\.path: file not found: .*nope\.csv"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_relative_path_is_taken_from_the_spec_folder(tmp_path, data_dir, demo_data) -> None:
    (tmp_path / "mine.csv").write_text("material_id,cif\n")
    demo_data["sources"][0]["path"] = "mine.csv"
    spec = load_spec(_write(tmp_path, demo_data), data_dir)
    assert spec.sources[0].path == (tmp_path / "mine.csv").resolve()


def test_unknown_variable_is_refused(tmp_path, data_dir, demo_data) -> None:
    demo_data["sources"][0]["path"] = "${datadir}/x.csv"
    with pytest.raises(SpecError, match=r"sources\.0\.path: unknown variable \$\{datadir\}"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_criterion_without_a_model_is_refused(tmp_path, data_dir, demo_data) -> None:
    demo_data["criteria"].append({"property": "density", "max": 5, "unit": "g/cm3"})
    with pytest.raises(SpecError, match=r"criteria\.2\.property: 'density' has no model"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_model_target_must_be_a_source_property(tmp_path, data_dir, demo_data) -> None:
    demo_data["models"][0]["target"] = "bulk_modulus"
    with pytest.raises(SpecError, match=r"models\.0\.target: 'bulk_modulus' is not a property"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_every_mistake_is_reported_at_once(tmp_path, data_dir, demo_data) -> None:
    demo_data["shortlist_size"] = 0
    del demo_data["sources"][0]["licence"]
    with pytest.raises(SpecError) as caught:
        load_spec(_write(tmp_path, demo_data), data_dir)
    assert "shortlist_size" in str(caught.value)
    assert "sources.0.licence: required key is missing" in str(caught.value)


def test_missing_spec_file_and_bad_yaml(tmp_path, data_dir) -> None:
    with pytest.raises(SpecError, match="campaign spec not found"):
        load_spec(tmp_path / "absent.yaml", data_dir)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad, data_dir)


def test_criterion_unit_must_match_the_property(tmp_path, data_dir, demo_data) -> None:
    demo_data["criteria"][1]["unit"] = "meV"
    with pytest.raises(SpecError, match=r"criteria\.1\.unit: 'meV', but band_gap is in 'eV'"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_featurizers_come_from_matminer_or_matscreen(tmp_path, data_dir, demo_data) -> None:
    demo_data.setdefault("featurization", {})["featurizers"] = [
        {"input": "structure", "cls": "os.system"}
    ]
    with pytest.raises(SpecError, match=r"featurization\.featurizers\.0\.cls: 'os\.system' is not"):
        load_spec(_write(tmp_path, demo_data), data_dir)
    demo_data.setdefault("featurization", {})["featurizers"] = [
        {"input": "structure", "cls": "matminer.featurizers.structure.NoSuchFeaturizer"}
    ]
    with pytest.raises(SpecError, match=r"featurizers\.0\.cls: cannot import"):
        load_spec(_write(tmp_path, demo_data), data_dir)
    demo_data["featurization"] = {"preset": "fastest"}
    with pytest.raises(SpecError, match=r"featurization\.preset: unknown preset 'fastest'"):
        load_spec(_write(tmp_path, demo_data), data_dir)


def test_demo_spec_takes_composition_and_site_role_features(data_dir) -> None:
    from matscreen.tasks.featurize import featurization_config

    config = featurization_config(load_spec(DEFAULT_SPEC, data_dir).featurization)
    classes = [f["cls"].rsplit(".", 1)[1] for f in config["featurizers"]]
    assert classes[-1] == "SiteRoleProperty" and classes[0] == "ElementProperty"
    assert config["preset"] == "sites"


@pytest.mark.parametrize(
    "example", sorted((REPOSITORY_ROOT / "deploy" / "campaigns").glob("*.yaml")), ids=str
)
def test_recorded_spec_loads_again(example: Path, tmp_path: Path, data_dir: Path) -> None:
    """A run records its spec fully dumped; reproducing it loads that dump as a spec."""
    spec = load_spec(example, data_dir)
    dumped = tmp_path / "recorded.yaml"
    dumped.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    assert load_spec(dumped, data_dir).fingerprint() == spec.fingerprint()
