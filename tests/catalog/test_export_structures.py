"""A run's RO-Crate lists the DFT hand-off files in ``structures/`` with sha256 and size.

The runs are recorded by ``record_campaign`` of test_export.py (real structure records,
xgboost models and output files); the hand-off is written with the shortlist's structure
records from the catalog and recorded with the other output files, as the campaign does.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import test_export as recorded_runs
from rocrate.rocrate import ROCrate

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.export import export_rocrate, write_run_crate
from matscreen.tasks.errors import ArtifactError
from matscreen.tasks.report.handoff import JSONL_NAME, README_NAME, write_structures

SPEC_SIZE = recorded_runs.SPEC["shortlist_size"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _structure_files(folder: Path) -> dict[str, Path]:
    return {
        p.relative_to(folder).as_posix(): p
        for p in (folder / "structures").rglob("*")
        if p.is_file()
    }


def _crate_files(folder: Path) -> dict[str, Any]:
    return {e.id: e for e in ROCrate(folder).data_entities}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> recorded_runs.Built:
    """A run whose output files include the hand-off, recorded in its report."""
    folder = tmp_path_factory.mktemp("handoff")
    catalog = Catalog(f"sqlite:///{folder / 'catalog.sqlite'}")
    artifacts = ArtifactStore(folder / "artifacts")
    write_outputs = recorded_runs.write_outputs

    def with_structures(output_dir: Path, ranking, shortlist, *args: Any) -> dict[str, Any]:
        files = write_outputs(output_dir, ranking, shortlist, *args)
        records = catalog.find_entities("structure_record")
        structures = {e.name: e.attributes["structure"] for e in records}
        catalog_ids = {e.name: e.id for e in records}
        return {**files, **write_structures(output_dir, shortlist, structures, catalog_ids)}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recorded_runs, "write_outputs", with_structures)
        return recorded_runs.record_campaign(catalog, artifacts, folder / "run")


def test_the_run_crate_lists_the_structure_files(
    recorded: recorded_runs.Built, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(recorded.output_dir, folder)
    structure_files = _structure_files(folder)
    # One CIF and one POSCAR per shortlisted candidate, the JSON lines and the README.
    assert len(structure_files) == 2 * SPEC_SIZE + 2
    assert {f"structures/{JSONL_NAME}", f"structures/{README_NAME}"} <= set(structure_files)

    metadata = write_run_crate(recorded.catalog, recorded.artifacts, recorded.run_id, folder)
    files = _crate_files(folder)
    top = {p.name for p in folder.iterdir() if p.is_file() and p != metadata}
    assert set(files) == top | set(structure_files)
    for name, path in structure_files.items():
        assert files[name]["sha256"] == _sha256(path), name
        assert files[name]["contentSize"] == str(path.stat().st_size), name
    media = {name: files[name]["encodingFormat"] for name in structure_files}
    assert {m for n, m in media.items() if n.endswith(".cif")} == {"chemical/x-cif"}
    assert media[f"structures/{JSONL_NAME}"] == "application/jsonl"
    assert media[f"structures/{README_NAME}"] == "text/plain"
    (action,) = [e for e in ROCrate(folder).contextual_entities if e.type == "CreateAction"]
    assert {r.id for r in action["result"]} >= set(structure_files) | {"shortlist.csv"}

    # A hand-off file changed after the run is refused, naming it.
    cif = next(p for n, p in structure_files.items() if n.endswith(".cif"))
    cif.write_text(cif.read_text().replace("_cell_length_a", "_cell_length_a  "))
    with pytest.raises(ArtifactError, match=f"{cif.name} has sha256"):
        write_run_crate(recorded.catalog, recorded.artifacts, recorded.run_id, folder)
    # So is a missing one.
    shutil.copy(recorded.output_dir / "structures" / cif.name, cif)
    (folder / "structures" / JSONL_NAME).unlink()
    with pytest.raises(ArtifactError, match=f"{JSONL_NAME} is missing"):
        write_run_crate(recorded.catalog, recorded.artifacts, recorded.run_id, folder)


def test_files_the_run_did_not_write_are_left_out(
    recorded: recorded_runs.Built, tmp_path: Path
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(recorded.output_dir, folder)
    (folder / "structures" / "my-notes.txt").write_text("relax with PBEsol first")
    (folder / "structures" / ".001_x.cif.tmp").write_text("half a file")
    write_run_crate(recorded.catalog, recorded.artifacts, recorded.run_id, folder)
    files = _crate_files(folder)
    assert "structures/my-notes.txt" not in files
    assert "structures/.001_x.cif.tmp" not in files
    assert set(_structure_files(recorded.output_dir)) <= set(files)


def test_an_exported_crate_carries_the_structure_files(
    recorded: recorded_runs.Built, tmp_path: Path
) -> None:
    structure_files = _structure_files(recorded.output_dir)
    for outputs_dir in (recorded.output_dir, None):
        out = tmp_path / f"crate-{outputs_dir is not None}"
        written = export_rocrate(
            recorded.catalog, recorded.artifacts, recorded.run_id, out, outputs_dir
        )
        files = _crate_files(out)
        for name, source in structure_files.items():
            # Copied next to the metadata, under the same relative name, byte for byte.
            assert (out / name).read_bytes() == source.read_bytes(), name
            assert files[name]["sha256"] == _sha256(source), name
            assert out / name in written.files
        on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        assert set(files) == on_disk - {"ro-crate-metadata.json"}


def test_an_unrecorded_structures_folder_is_listed_too(tmp_path: Path) -> None:
    """Runs that wrote the hand-off without recording it: every file in the folder is listed."""
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    built = recorded_runs.record_campaign(catalog, artifacts, tmp_path / "run")
    structures = {r.id: r.structure for r in built.records}
    shortlist = pd.read_csv(built.output_dir / "shortlist.csv")
    written = write_structures(built.output_dir, shortlist, structures)

    write_run_crate(catalog, artifacts, built.run_id, built.output_dir)
    files = _crate_files(built.output_dir)
    assert len(written) == 2 * len(shortlist) + 2
    for name, entry in written.items():
        assert files[name]["sha256"] == entry["sha256"]
        assert files[name]["contentSize"] == str(entry["bytes"])
