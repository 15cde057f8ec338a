"""``matscreen reproduce``: a run re-run from its recorded spec and inputs ranks the same."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from matscreen.catalog import Catalog
from matscreen.flows.cli import main
from matscreen.flows.reproduce import ReproductionError, check_inputs, recorded_run
from matscreen.flows.settings import Settings


@pytest.fixture()
def copied_home(campaign_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the two runs' catalog, artifacts and feature store."""
    home = tmp_path / "home"
    shutil.copytree(campaign_runs.home, home)
    monkeypatch.setenv("MATSCREEN_HOME", str(home))
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "2")
    for name in ("MATSCREEN_CATALOG_URL", "MATSCREEN_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.mark.slow
def test_reproduced_ranking_is_identical(
    prefect_server, campaign_runs, copied_home: Path, tmp_path: Path, capsys
) -> None:
    original = campaign_runs.runs[0]
    out = tmp_path / "again"
    assert main(["reproduce", original["run_id"], "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"ranking identical to run {original['run_id']}" in printed
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "ranking.csv"), pd.read_csv(original["output_dir"] / "ranking.csv")
    )
    with Catalog(f"sqlite:///{copied_home / 'catalog.sqlite'}") as catalog:
        runs = catalog.activities(kind="flow_run")
        assert len(runs) == 3  # the two recorded runs and the reproduction


@pytest.mark.slow
def test_changed_input_file_is_refused(campaign_runs, tmp_path: Path) -> None:
    with Catalog(campaign_runs.catalog_url) as catalog:
        recorded = recorded_run(catalog, campaign_runs.runs[0]["run_id"])
    check_inputs(recorded)  # the recorded file is unchanged
    (snapshot,) = recorded.snapshots
    edited = tmp_path / "edited.csv"
    shutil.copy(snapshot.attributes["location"], edited)
    with open(edited, "a") as handle:
        handle.write("\n")
    moved = replace(snapshot, attributes={**snapshot.attributes, "location": str(edited)})
    with pytest.raises(ReproductionError, match=r"cmr_perovskites: .*edited.csv changed"):
        check_inputs(replace(recorded, snapshots=[moved]))
    gone = replace(snapshot, attributes={**snapshot.attributes, "location": str(tmp_path / "x")})
    with pytest.raises(ReproductionError, match="is gone"):
        check_inputs(replace(recorded, snapshots=[gone]))


def test_unknown_run_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    assert main(["reproduce", "no-such-run"]) == 2  # no catalog yet
    assert "no catalog at" in capsys.readouterr().err
    Catalog(Settings().catalog_url).close()
    assert main(["reproduce", "no-such-run"]) == 2
    assert "no activity no-such-run" in capsys.readouterr().err
