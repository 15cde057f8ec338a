"""The DFT hand-off: CIF, POSCAR and JSON lines of the shortlist, in ``structures/``.

Structures are real CMR perovskites, read from the shared data where it lies, plus a
decorated SrTiO3 whose id holds ``:`` and ``/``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser

from matscreen.tasks.errors import RecordError
from matscreen.tasks.report.handoff import (
    JSONL_NAME,
    README_NAME,
    STRUCTURES_DIR,
    OutputFolderError,
    file_stems,
    slug,
    write_structures,
)

DECORATED = "decorations:perovskite_ABX3/cubic:Sr-Ti-O3"
SITES = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def _cubic(a_site: str, b_site: str, a: float) -> dict[str, Any]:
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"], SITES).as_dict()


@pytest.fixture(scope="module")
def real_structures(perovskite_csv: Path) -> dict[str, dict[str, Any]]:
    """The first three CMR perovskites (distorted, P1 cells) and a decorated SrTiO3."""
    csv.field_size_limit(1 << 26)
    with open(perovskite_csv, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [next(reader) for _ in range(3)]
    found = {
        f"cmr_perovskites:{row['material_id']}": Structure.from_str(row["cif"], "cif").as_dict()
        for row in rows
    }
    found[DECORATED] = _cubic("Sr", "Ti", 3.905)
    return found


def _shortlist(ids: list[str], ranks: list[int] | None = None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "rank": ranks or [1, 2, 5, 9][:n],
            "id": ids,
            "formula": [f"F{i}" for i in range(n)],
            "spacegroup": ["P1 (1)"] * n,
            "pred_band_gap": [1.25, 1.5, 2.0, 2.5][:n],
            "lower_band_gap": [1.0, 1.2, float("nan"), 2.1][:n],
            "upper_band_gap": [1.5, 1.8, 2.4, 2.9][:n],
            "pred_formation_energy_per_atom": [-1.5, -1.4, -1.3, -1.2][:n],
            "p_success": [0.9, 0.8, 0.7, 0.6][:n],
            "meets_criteria": [True, True, False, True][:n],
            "shortlist_position": np.arange(1, n + 1, dtype=np.int64),
        }
    )


def _listing(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _same_atoms(a: Structure, b: Structure, tolerance: float) -> bool:
    """Same cell parameters, and every atom of ``a`` has one of the same element in ``b``."""
    if len(a) != len(b) or not np.allclose(
        a.lattice.abc + a.lattice.angles, b.lattice.abc + b.lattice.angles, atol=1e-6
    ):
        return False
    distances = a.lattice.get_all_distances(a.frac_coords, b.frac_coords)
    return all(
        any(d <= tolerance and b[j].specie == site.specie for j, d in enumerate(row))
        for site, row in zip(a, distances, strict=True)
    )


def test_every_candidate_gets_a_cif_a_poscar_and_a_json_line(
    real_structures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = list(real_structures)
    catalog_ids = {i: hashlib.sha256(i.encode()).hexdigest() for i in ids[:3]}
    written = write_structures(
        tmp_path, _shortlist(ids), real_structures, catalog_ids, {"band_gap": "eV"}
    )
    folder = tmp_path / STRUCTURES_DIR
    stems = [
        f"001_cmr_perovskites-{ids[0].split(':')[1]}",
        f"002_cmr_perovskites-{ids[1].split(':')[1]}",
        f"005_cmr_perovskites-{ids[2].split(':')[1]}",
        "009_decorations-perovskite_ABX3-cubic-Sr-Ti-O3",
    ]
    names = [f"{s}{ext}" for s in stems for ext in (".cif", ".vasp")] + [JSONL_NAME, README_NAME]
    assert sorted(written) == sorted(f"{STRUCTURES_DIR}/{n}" for n in names)
    on_disk = _listing(tmp_path)
    assert set(on_disk) == set(written)
    for name, entry in written.items():
        assert entry["path"] == str((tmp_path / name).resolve())
        assert entry["sha256"] == hashlib.sha256(on_disk[name]).hexdigest()
        assert entry["bytes"] == len(on_disk[name])

    for stem, candidate_id in zip(stems, ids, strict=True):
        original = Structure.from_dict(real_structures[candidate_id])
        poscar = Structure.from_file(folder / f"{stem}.vasp")
        # The POSCAR is the cell as given: same lattice, same sites in the same order.
        np.testing.assert_allclose(poscar.lattice.matrix, original.lattice.matrix, atol=1e-12)
        np.testing.assert_allclose(poscar.frac_coords, original.frac_coords, atol=1e-12)
        assert [s.species_string for s in poscar] == [s.species_string for s in original]
        assert (folder / f"{stem}.vasp").read_text().splitlines()[0] == (
            f"{candidate_id} rank {int(stem[:3])}"
        )
        cif = Structure.from_file(folder / f"{stem}.cif")
        assert _same_atoms(original, cif, 1e-4), candidate_id

    # The decorated cubic cell is symmetric: its CIF says so and lists 3 distinct sites.
    text = (folder / f"{stems[3]}.cif").read_text()
    assert re.search(r"_symmetry_space_group_name_H-M\s+'?Pm-3m", text)
    assert re.search(r"_symmetry_Int_Tables_number\s+221", text)
    block = CifParser(folder / f"{stems[3]}.cif").as_dict()["SrTiO3"]
    assert block["_atom_site_type_symbol"] == ["Sr", "Ti", "O"]
    assert len(block["_symmetry_equiv_pos_as_xyz"]) == 48

    lines = [json.loads(t) for t in (folder / JSONL_NAME).read_text().splitlines()]
    assert [line["rank"] for line in lines] == [1, 2, 5, 9]
    assert [line["candidate_id"] for line in lines] == ids
    assert [line["catalog_id"] for line in lines] == [*catalog_ids.values(), None]
    assert [line["formula"] for line in lines] == ["F0", "F1", "F2", "F3"]
    assert [line["p_success"] for line in lines] == [0.9, 0.8, 0.7, 0.6]
    assert lines[0]["predictions"] == {
        "band_gap": {"value": 1.25, "lower": 1.0, "upper": 1.5, "unit": "eV"},
        "formation_energy_per_atom": {"value": -1.5, "lower": None, "upper": None},
    }
    assert lines[2]["predictions"]["band_gap"] == {
        "value": 2.0,
        "lower": None,
        "upper": 2.4,
        "unit": "eV",
    }
    assert lines[2]["columns"] == {
        "spacegroup": "P1 (1)",
        "meets_criteria": False,
        "shortlist_position": 3,
    }
    assert lines[3]["files"] == {"cif": f"{stems[3]}.cif", "poscar": f"{stems[3]}.vasp"}
    for line in lines:
        assert Structure.from_dict(line["structure"]) == Structure.from_dict(
            real_structures[line["candidate_id"]]
        )

    readme = (folder / README_NAME).read_text()
    assert "4 candidates" in readme
    assert 'Structure.from_dict(line["structure"])' in readme


def test_file_names_are_portable_and_unique() -> None:
    assert slug("cmr_perovskites:16025") == "cmr_perovskites-16025"
    assert slug("decorations:perovskite_ABX3:Sr-Ti-O3") == "decorations-perovskite_ABX3-Sr-Ti-O3"
    assert slug("../../etc/passwd") == "etc-passwd"
    assert slug("CaTiO₃ phase é") == "CaTiO3-phase-e"
    assert slug(":::") == "candidate"
    assert len(slug("x" * 300)) == 80
    # Ids that slug alike (also when case is folded) get a hash of the id appended.
    stems = file_stems([7, 7, 7, 12], ["a:b", "a/b", "A:B", "c"])
    assert stems[3] == "012_c"
    assert len({s.casefold() for s in stems}) == 4
    for stem, candidate_id in zip(stems[:3], ["a:b", "a/b", "A:B"], strict=True):
        digest = hashlib.sha256(candidate_id.encode()).hexdigest()
        assert stem == f"007_{slug(candidate_id)}-{digest[:8]}"
    assert file_stems([1, 1000], ["x", "y"]) == ["0001_x", "1000_y"]
    with pytest.raises(RecordError, match="candidate a:b occurs twice"):
        file_stems([1, 2], ["a:b", "a:b"])


def test_a_rerun_replaces_the_folder_without_stale_files(
    real_structures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = list(real_structures)
    (tmp_path / "shortlist.csv").write_text("rank,id\n")
    write_structures(tmp_path, _shortlist(ids), real_structures)
    # An extra file left in the folder goes too: the folder is the run's.
    (tmp_path / STRUCTURES_DIR / "notes.txt").write_text("old")

    second = {"mp:mp-5229": _cubic("Ba", "Zr", 4.19), "mp:mp-2998": _cubic("Ca", "Ti", 3.84)}
    written = write_structures(tmp_path, _shortlist(list(second), [3, 4]), second)
    expected = {
        f"{STRUCTURES_DIR}/{n}"
        for n in (
            "003_mp-mp-5229.cif",
            "003_mp-mp-5229.vasp",
            "004_mp-mp-2998.cif",
            "004_mp-mp-2998.vasp",
            JSONL_NAME,
            README_NAME,
        )
    }
    assert set(written) == expected
    listing = _listing(tmp_path)
    assert set(listing) == expected | {"shortlist.csv"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    lines = (tmp_path / STRUCTURES_DIR / JSONL_NAME).read_text().splitlines()
    assert [json.loads(t)["candidate_id"] for t in lines] == list(second)


def test_an_empty_shortlist_writes_an_empty_listing(tmp_path: Path) -> None:
    written = write_structures(tmp_path / "new" / "run", _shortlist([]), {})
    assert sorted(written) == [f"{STRUCTURES_DIR}/{README_NAME}", f"{STRUCTURES_DIR}/{JSONL_NAME}"]
    assert written[f"{STRUCTURES_DIR}/{JSONL_NAME}"]["bytes"] == 0


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "no structure"),
        ("Sr Ti O3", "not a pymatgen structure dict"),
        ({"lattice": {"matrix": [[1, 0, 0], [0, 1, 0]]}, "sites": []}, "unreadable structure"),
        ({**_cubic("Sr", "Ti", 3.9), "sites": [{"species": [{"element": "Xq"}]}]}, "unreadable"),
        ({**_cubic("Sr", "Ti", 3.9), "sites": []}, "unreadable.*at least 1 site"),
        (
            Structure(
                Lattice.cubic(3.9), [{"Sr": 0.5, "Ba": 0.5}, "Ti", "O", "O", "O"], SITES
            ).as_dict(),
            "disordered",
        ),
        (_cubic("Sr", "Ti", float("nan")), "non-finite"),
    ],
)
def test_a_bad_structure_is_refused_naming_the_candidate_and_nothing_changes(
    bad: Any, message: str, real_structures: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = list(real_structures)
    write_structures(tmp_path, _shortlist(ids[:2]), real_structures)
    before = _listing(tmp_path)
    structures = {**real_structures, DECORATED: bad}
    if bad is None:
        del structures[DECORATED]
    with pytest.raises(RecordError, match=f"candidate {re.escape(DECORATED)}.*{message}"):
        write_structures(tmp_path, _shortlist(ids), structures)
    assert _listing(tmp_path) == before
    assert [p.name for p in tmp_path.iterdir()] == [STRUCTURES_DIR]


def test_an_output_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    structures = {"mp:1": _cubic("Sr", "Ti", 3.9)}
    not_a_folder = tmp_path / "run"
    not_a_folder.write_text("I am a file")
    with pytest.raises(OutputFolderError, match=f"output folder {not_a_folder} is a file"):
        write_structures(not_a_folder, _shortlist(["mp:1"]), structures)
    with pytest.raises(OutputFolderError, match="cannot create output folder"):
        write_structures(not_a_folder / "below", _shortlist(["mp:1"]), structures)
    assert not_a_folder.read_text() == "I am a file"

    # A file named like the structures folder is not the run's to replace.
    run = tmp_path / "run2"
    run.mkdir()
    (run / STRUCTURES_DIR).write_text("someone's notes")
    with pytest.raises(OutputFolderError, match="is not a folder"):
        write_structures(run, _shortlist(["mp:1"]), structures)
    assert (run / STRUCTURES_DIR).read_text() == "someone's notes"
    assert [p.name for p in run.iterdir()] == [STRUCTURES_DIR]


def test_a_shortlist_without_ids_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'id' column"):
        write_structures(tmp_path, pd.DataFrame({"rank": [1]}), {})
