"""The Python API: ``import matscreen`` gives the version and runs campaigns from objects."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

import matscreen
from matscreen.flows.api import _spec_file
from matscreen.flows.settings import Settings
from matscreen.tasks.errors import MatscreenError, SpecError


def test_version_is_the_installed_one() -> None:
    assert matscreen.__version__ == version("matscreen")


def test_a_spec_object_is_recorded_as_a_file_that_loads_to_the_same_spec(
    subset_spec: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    settings = Settings()
    spec = matscreen.load_spec(subset_spec, data_dir)
    changed = spec.model_copy(update={"shortlist_size": 3})
    path = _spec_file(changed, settings)
    assert path.parent == settings.home / "specs"
    again = matscreen.load_spec(path, data_dir)
    assert again.fingerprint() == changed.fingerprint() != spec.fingerprint()
    assert again.shortlist_size == 3
    # The same spec as a dict lands in the same content-addressed file.
    assert _spec_file(changed.model_dump(mode="json"), settings) == path
    assert _spec_file(str(subset_spec), settings) == subset_spec.resolve()


def test_bad_specs_are_refused_before_any_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    with pytest.raises(MatscreenError, match="spec must be a path, a CampaignSpec or a dict"):
        matscreen.run_campaign(42)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="campaign spec not found"):
        matscreen.run_campaign(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="shortlist_size"):
        matscreen.run_campaign({"name": "x", "shortlist_size": 0})
