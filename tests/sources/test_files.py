"""The ``files`` source on real structures: every format, folders, ids, properties, failures."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import FilesSourceSpec, PropertySpec


def _spec(path: Path, **fields) -> FilesSourceSpec:
    return FilesSourceSpec(
        kind="files",
        name="local",
        path=path,
        licence="CC-BY-4.0",
        citation=["test data"],
        **fields,
    )


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_jsonl_with_ids_and_properties(data_dir: Path) -> None:
    path = data_dir / "materials_project" / "mp2018_subset_100.jsonl"
    rows = _jsonl(path)
    spec = _spec(
        path,
        id_key="id",
        properties={
            "formation_energy_per_atom": PropertySpec(column="eform", unit="eV/atom"),
            "band_gap": PropertySpec(column="egap", unit="eV"),
        },
    )
    result = read_source(spec)
    assert not result.failures and len(result.records) == len(rows) == 100
    by_id = {r.source_id: r for r in result.records}
    for row in rows:
        record = by_id[row["id"]]
        assert record.properties == {
            "formation_energy_per_atom": row["eform"],
            "band_gap": row["egap"],
        }
        assert record.units["band_gap"] == "eV"
        expected = Structure.from_dict(row["structure"]).composition.reduced_formula
        assert record.formula == expected
    assert result.snapshot.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.snapshot.n_rows == 100


def test_nested_keys_reach_into_json(data_dir: Path) -> None:
    path = data_dir / "optimade" / "alexandria_98.jsonl"
    rows = _jsonl(path)
    spec = _spec(
        path,
        id_key="entry_id",
        properties={
            "formation_energy_per_atom": PropertySpec(
                column="targets.regression.e_form", unit="eV/atom"
            ),
            "energy_above_hull": PropertySpec(
                column="targets.regression.e_above_hull", unit="eV/atom"
            ),
        },
    )
    result = read_source(spec)
    assert len(result.records) + len(result.failures) == len(rows) == 98
    assert not result.failures
    first = result.records[0]
    assert first.source_id == rows[0]["entry_id"]
    assert first.properties["energy_above_hull"] == rows[0]["targets"]["regression"]["e_above_hull"]
    assert len(first.structure["sites"]) == rows[0]["natoms"]


def test_csv_with_cif_column(data_dir: Path) -> None:
    path = data_dir / "materials_project" / "mp20_schema_sample.csv"
    spec = _spec(
        path,
        id_key="material_id",
        properties={
            "band_gap": PropertySpec(column="band_gap", unit="eV"),
            "energy_above_hull": PropertySpec(column="e_above_hull", unit="eV/atom"),
        },
    )
    result = read_source(spec)
    assert not result.failures and len(result.records) == 4
    import pandas as pd

    frame = pd.read_csv(path).set_index("material_id")
    for record in result.records:
        row = frame.loc[record.source_id]
        assert record.properties["band_gap"] == pytest.approx(row["band_gap"])
        structure = Structure.from_dict(record.structure)
        assert structure.composition.reduced_formula == row["pretty_formula"]
        number = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
        assert number == row["spacegroup.number"]


@pytest.fixture
def structure_folder(tmp_path: Path, data_dir: Path) -> tuple[Path, list[Structure]]:
    """A folder holding real MP structures in every supported format, plus one broken file."""
    from ase.io import write as ase_write
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    documents = _jsonl(data_dir / "materials_project" / "summary_200.jsonl")[:6]
    structures = [Structure.from_dict(d["structure"]) for d in documents]
    folder = tmp_path / "structures"
    (folder / "vasp").mkdir(parents=True)
    CifWriter(structures[0]).write_file(folder / "a.cif")
    Poscar(structures[1]).write_file(folder / "vasp" / "POSCAR")
    (folder / "c.json").write_text(json.dumps(structures[2].as_dict()))
    with gzip.open(folder / "d.json.gz", "wt") as handle:
        json.dump([structures[3].as_dict()], handle)
    frames = []
    for structure, document in zip(structures[4:], documents[4:], strict=True):
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info = {"name": document["formula_pretty"], "gap": document["band_gap"]}
        frames.append(atoms)
    ase_write(folder / "e.extxyz", frames, format="extxyz")
    (folder / "broken.cif").write_text("data_x\n_cell_length_a 4\n")
    return folder, structures


def test_folder_of_mixed_formats(structure_folder: tuple[Path, list[Structure]]) -> None:
    folder, structures = structure_folder
    result = read_source(_spec(folder, pattern="**/*"))
    ids = [r.source_id for r in result.records]
    assert ids == ["a.cif", "c.json", "d.json.gz#1", "e.extxyz#1", "e.extxyz#2", "vasp/POSCAR"]
    assert [f.source_id for f in result.failures] == ["broken.cif"]
    assert "broken.cif" in result.failures[0].message
    matcher = StructureMatcher()
    expected = dict(zip(ids, [structures[i] for i in (0, 2, 3, 4, 5, 1)], strict=True))
    for record in result.records:
        read = Structure.from_dict(record.structure)
        assert matcher.fit(read, expected[record.source_id]), record.source_id
    assert result.snapshot.n_rows == 7


def test_extxyz_ids_and_properties_from_info(
    structure_folder: tuple[Path, list[Structure]], data_dir: Path
) -> None:
    folder, _ = structure_folder
    documents = _jsonl(data_dir / "materials_project" / "summary_200.jsonl")[4:6]
    spec = _spec(
        folder / "e.extxyz",
        id_key="name",
        properties={"band_gap": PropertySpec(column="gap", unit="eV")},
    )
    result = read_source(spec)
    assert [r.source_id for r in result.records] == [d["formula_pretty"] for d in documents]
    assert [r.properties["band_gap"] for r in result.records] == [
        pytest.approx(d["band_gap"]) for d in documents
    ]


def test_folder_snapshot_follows_file_contents(
    structure_folder: tuple[Path, list[Structure]],
) -> None:
    folder, _ = structure_folder
    spec = _spec(folder, pattern="*.json")
    first, again = read_source(spec).snapshot, read_source(spec).snapshot
    assert first.sha256 == again.sha256
    (folder / "c.json").write_text((folder / "c.json").read_text() + "\n")
    assert read_source(spec).snapshot.sha256 != first.sha256


def test_nothing_matching_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"no file in .* matches '\*\.cif'"):
        read_source(_spec(tmp_path, pattern="*.cif"))


def test_unknown_extension_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError, match="notes.txt: cannot tell the structure format"):
        read_source(_spec(tmp_path))


def test_bad_rows_fail_alone(tmp_path: Path, data_dir: Path) -> None:
    rows = _jsonl(data_dir / "materials_project" / "mp2018_subset_100.jsonl")[:5]
    rows[1]["eform"] = "-0.5 eV"
    rows[3] = {"id": rows[3]["id"], "structure": {"lattice": "?"}}
    lines = [json.dumps(r) for r in rows]
    lines.insert(2, "{not json")
    lines.append(json.dumps(rows[0]))  # the same id again
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    spec = _spec(
        path,
        id_key="id",
        properties={"formation_energy_per_atom": PropertySpec(column="eform", unit="eV/atom")},
    )
    result = read_source(spec)
    assert [r.source_id for r in result.records] == [rows[0]["id"], rows[2]["id"], rows[4]["id"]]
    messages = {f.row: f.message for f in result.failures}
    assert sorted(messages) == [2, 3, 5, 7]
    assert "'eform'" in messages[2] and "not a number" in messages[2]
    assert "not a JSON object" in messages[3]
    assert "structure" in messages[5]
    assert "duplicate id" in messages[7]
