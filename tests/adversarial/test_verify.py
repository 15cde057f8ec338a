"""``matscreen verify`` on damage found by a hostile tester: what it cannot move is not
called repaired, odd files do not stop it, and lost edges and descriptions are reported."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.features import FeatureStore
from matscreen.catalog.nodes import Activity, Entity
from matscreen.catalog.verify import verify_home
from matscreen.tasks.featurize import preset_config
from matscreen.tasks.runinfo import utc_now

CONFIG = preset_config("fast")


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A home with one model entity whose artifact is stored, and one feature part."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    sha = artifacts.put_bytes(b'{"trees": [1, 2, 3]}')
    step = Activity(
        id="step-1", kind="step", name="train", started_at=utc_now(), ended_at=utc_now(),
        status="completed",
    )  # fmt: skip
    catalog.record_step(step, [Entity.new("model", "m", {"artifact_sha256": sha})])
    catalog.close()
    frame = pd.DataFrame(np.ones((2, 2)), index=pd.Index(["a", "b"]), columns=["f0", "f1"])
    FeatureStore(tmp_path / "features", CONFIG).add(frame, {})
    return tmp_path


def _verify(home: Path, repair: bool = False):  # type: ignore[no-untyped-def]
    with Catalog(f"sqlite:///{home / 'catalog.sqlite'}") as catalog:
        return verify_home(catalog, ArtifactStore(home / "artifacts"), home / "features", repair)


def _lines(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{f.area}: {f.subject}: {f.problem} -> {f.repaired}" for f in result.findings]


def test_a_clean_home_has_no_findings(home: Path) -> None:
    result = _verify(home)
    assert result.findings == []
    assert result.checked["artifacts"] == 1 and result.checked["feature parts"] == 1


def test_a_file_that_cannot_be_moved_is_not_called_repaired(home: Path) -> None:
    (artifact,) = [p for p in (home / "artifacts").rglob("*") if p.is_file()]
    artifact.write_bytes(b"tampered")
    (part,) = (home / "features").rglob("part-*.parquet")
    part.write_bytes(part.read_bytes()[:-3])
    (home / "artifacts" / "quarantine").write_text("a file where the folder goes")
    (part.parent / "quarantine").write_text("here too")

    result = _verify(home, repair=True)
    assert len(result.findings) == 2, _lines(result)
    assert all(f.repaired is None for f in result.findings), _lines(result)
    assert artifact.exists() and part.exists()
    assert len(_verify(home).findings) == 2  # still there, still found


def test_odd_entries_do_not_stop_the_check(home: Path) -> None:
    folder = next((home / "features").iterdir())
    (folder / f"part-20260101T000000-{'a' * 64}.parquet").mkdir()  # a folder, not a part
    (home / "features" / "stray").mkdir()
    (home / "artifacts" / "zz").mkdir()
    (home / "artifacts" / "zz" / "notes.txt").write_text("not an artifact")
    result = _verify(home)
    lines = _lines(result)
    assert any("stray/featurization.json: unreadable" in line for line in lines), lines
    assert any("referenced by no entity" in line for line in lines), lines


def test_a_part_is_checked_even_when_its_description_is_damaged(home: Path) -> None:
    folder = next((home / "features").iterdir())
    (folder / "featurization.json").write_text("")
    (part,) = folder.glob("part-*.parquet")
    part.write_bytes(b"PAR1" + part.read_bytes()[4:-8] + b"junkPAR1")
    lines = _lines(_verify(home))
    assert any("featurization.json: unreadable" in line for line in lines), lines
    assert any(f"{part}: is corrupt" in line for line in lines), lines
    FeatureStore(home / "features", CONFIG)  # the next run writes the description again
    assert (folder / "featurization.json").read_bytes() != b""


def test_a_deleted_edge_and_an_unreferenced_corrupt_artifact_are_found(home: Path) -> None:
    database = sqlite3.connect(home / "catalog.sqlite")
    database.execute("DROP TRIGGER edges_no_delete")
    database.execute("DELETE FROM edges WHERE relation = 'wasGeneratedBy'")
    database.commit()
    database.close()
    orphan = hashlib.sha256(b"orphan").hexdigest()
    path = home / "artifacts" / orphan[:2] / orphan[2:]
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"not the orphan")
    lines = _lines(_verify(home, repair=True))
    assert any("without its wasGeneratedBy edge" in line for line in lines), lines
    assert any(f"{path}: corrupt" in line and "quarantined to" in line for line in lines), lines
    assert any("trigger edges_no_delete: is missing -> created again" in line for line in lines)
