"""A campaign home damaged on disk and in the database: lineage and ``verify`` say what is
wrong, ``verify --repair`` repairs what can be repaired, and the campaign runs again.

Damage done after a real campaign run: a byte of the ranking artifact, one digit of a model
file (still valid JSON), a bit of a feature part, a trigger dropped and an entity's row
edited behind it, and a run left ``running`` by a process that died.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from support.runs import dead_pid, running_run

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.flows.cli import main


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.slow
def test_a_damaged_home_is_found_repaired_and_runs_again(
    prefect_server, settings, subset_spec, tmp_path, capsys
) -> None:
    assert main(["campaign", "run", str(subset_spec), "--output", str(tmp_path / "run1")]) == 0
    shortlisted = pd.read_csv(tmp_path / "run1" / "shortlist.csv")["id"].iloc[0]
    artifacts = ArtifactStore(settings.artifact_dir)
    with Catalog(settings.catalog_url) as catalog:
        ranking = catalog.find_entities("ranking")[0]
        model = catalog.find_entities("model")[0]
        spec_entity = catalog.find_entities("campaign_spec")[0]
        catalog.start_activity(running_run("killed-run", pid=dead_pid()))
    ranking_file = artifacts.path_for(ranking.attributes["artifact_sha256"])
    model_file = artifacts.path_for(model.attributes["artifact_sha256"])
    text = model_file.read_text()
    digit = next(i for i, c in enumerate(text) if c in "123456789" and text[i - 1] == ".")
    model_file.write_text(text[:digit] + str(int(text[digit]) % 9 + 1) + text[digit + 1 :])
    json.loads(model_file.read_text())  # still valid JSON
    capsys.readouterr()

    # lineage names the damaged model file and exits 1
    assert main(["lineage", shortlisted]) == 1
    out, err = capsys.readouterr()
    assert f"DAMAGED: artifact {model_file} is corrupt" in out
    assert "verify --repair" in err

    _flip_byte(ranking_file, len(ranking_file.read_bytes()) // 2)
    parts = sorted(settings.feature_dir.glob("*/part-*.parquet"))
    _flip_byte(parts[0], len(parts[0].read_bytes()) // 2)
    database = sqlite3.connect(settings.home / "catalog.sqlite")
    database.execute("DROP TRIGGER entities_no_update")
    database.execute("UPDATE entities SET name = 'edited' WHERE id = ?", (spec_entity.id,))
    database.commit()
    database.close()
    capsys.readouterr()

    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    expected = [
        f"artifact: {ranking_file}: corrupt",
        f"artifact: {model_file}: corrupt",
        f"features: {parts[0]}: is corrupt",
        "catalog: trigger entities_no_update: is missing",
        f"catalog: entity {spec_entity.id} (campaign_spec edited): its content does not match",
        "run: screen-candidates killed-run: recorded as running, but its process is gone",
    ]
    for line in expected:
        assert line in out, out
    assert "6 problem(s) found, 6 not repaired" in out
    assert ranking_file.exists() and parts[0].exists()  # a check alone changes nothing

    assert main(["verify", "--repair"]) == 1  # the edited entity cannot be repaired
    out = capsys.readouterr().out
    assert f"{model_file}: corrupt" in out and "-> quarantined" in out
    assert "-> marked crashed" in out and "-> created again" in out
    assert "6 problem(s) found, 1 not repaired" in out
    assert not ranking_file.exists() and not model_file.exists() and not parts[0].exists()
    assert main(["find", "runs"]) == 0
    assert "crashed" in capsys.readouterr().out

    # The campaign runs again: the model is fitted again, the lost feature rows computed
    # again, and the same ranking and model files are stored anew.
    assert main(["campaign", "run", str(subset_spec), "--output", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    assert artifacts.get_bytes(ranking.attributes["artifact_sha256"])
    assert artifacts.get_bytes(model.attributes["artifact_sha256"])
    first = pd.read_csv(tmp_path / "run1" / "ranking.csv")
    second = pd.read_csv(tmp_path / "run2" / "ranking.csv")
    pd.testing.assert_frame_equal(first, second)
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s) found, 1 not repaired" in out and "campaign_spec edited" in out

    # reproduce notes a damaged model file of the recorded run, and the reproduction
    # stores it anew.
    run1 = json.loads((tmp_path / "run1" / "metrics.json").read_text())["run_id"]
    model_file.write_bytes(model_file.read_bytes() + b" ")
    assert main(["reproduce", run1, "--output", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    assert f"note: run {run1}'s artifact {model_file} is corrupt" in out
    assert "stored again, intact" in out
    assert "ranking identical" in out
