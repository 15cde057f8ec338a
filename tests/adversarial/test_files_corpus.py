"""A folder of malformed structure files: the read goes on past every one of them.

The corpus is written by the tests into a temporary folder. Every file in it is accounted
for: it gives records, or one failure whose message names the file and the reason (and
the line, row or frame where the format has them). Nothing stops the read and nothing is
passed over in silence.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import FilesSourceSpec


def _spec(path: Path, **fields) -> FilesSourceSpec:
    return FilesSourceSpec(
        kind="files", name="local", path=path, licence="CC0-1.0", citation=["test"], **fields
    )


def _srtio3() -> Structure:
    return Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


def _nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _extxyz_frame(name: str, second_atom: str) -> str:
    return (
        "2\n"
        'Lattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=species:S:1:pos:R:3 '
        f'pbc="T T T" name={name}\n'
        "Na 0 0 0\n"
        f"Cl {second_atom}\n"
    )


#: file name -> (what its failure message must say, beside the file's name)
BAD_FILES = {
    "README.md": "not a structure file (cannot tell its format from the name; known: *.cif",
    "binary.cif": "not UTF-8 text (byte 0x89 at line 3, offset 26); is it a binary file?",
    "empty.cif": "empty file",
    "blank.cif": "empty CIF",
    "truncated.cif": "unreadable CIF",
    "no_atoms.cif": "unreadable CIF",
    "bad_counts.vasp": "unreadable POSCAR (IndexError",
    "flat.vasp": "degenerate cell (volume 0 Å³)",
    "not_structure.json": "no key 'structure'",
    "truncated.json": "not valid JSON (Expecting",
    "not_gzip.json.gz": "cannot read the file (Not a gzipped file",
    "truncated.json.gz": "cannot read the file (Compressed file ended",
    "dangling.cif": "dangling symbolic link (to missing.cif, which does not exist)",
    "loop.cif": "symbolic link loop",
    "header_only.csv": "holds no structure",
}


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Good files, files with good and bad rows, and files that are bad as a whole."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    srtio3, nacl = _srtio3(), _nacl()
    cif = str(CifWriter(srtio3))
    poscar = Poscar(srtio3).get_str()

    # Good files: one record each.
    (folder / "good.cif").write_text(cif)
    (folder / "good.vasp").write_text(poscar)
    (folder / "good.json").write_text(json.dumps(nacl.as_dict()))
    left_handed = poscar.replace("3.9049999999999998\n", "-3.9049999999999998\n", 1)
    assert left_handed != poscar
    (folder / "left_handed.vasp").write_text(left_handed)  # valid: VASP accepts it

    # Files bad as a whole.
    (folder / "README.md").write_text("# Structures\nCIFs of the perovskites.\n")
    (folder / "binary.cif").write_bytes(b"data_bin\n_cell_length_a 4\n" + b"\x89PNG\x00\xff" * 64)
    (folder / "empty.cif").write_bytes(b"")
    (folder / "blank.cif").write_text("\n  \n")
    (folder / "truncated.cif").write_text(cif[: len(cif) // 2])
    (folder / "no_atoms.cif").write_text(cif.split("loop_")[0])
    counts = poscar.splitlines()
    counts[6] = "1 1 7"  # seven O but three positions
    (folder / "bad_counts.vasp").write_text("\n".join(counts) + "\n")
    flat = poscar.splitlines()
    flat[4] = "0.0 0.0 0.0"  # c = 0: no volume
    (folder / "flat.vasp").write_text("\n".join(flat) + "\n")
    (folder / "not_structure.json").write_text(json.dumps({"hello": "world"}))
    whole = json.dumps(srtio3.as_dict())
    (folder / "truncated.json").write_text(whole[: len(whole) // 2])
    (folder / "not_gzip.json.gz").write_text(whole)
    (folder / "truncated.json.gz").write_bytes(gzip.compress(whole.encode())[:200])
    os.symlink("missing.cif", folder / "dangling.cif")
    os.symlink("loop.cif", folder / "loop.cif")
    (folder / "header_only.csv").write_text("id,cif\n")

    # Files with good and bad rows.
    (folder / "list.json").write_text(
        json.dumps([srtio3.as_dict(), {"lattice": 5, "sites": []}, 42, nacl.as_dict()])
    )
    lines = [
        json.dumps({"id": "a", "structure": nacl.as_dict()}),
        '{"id": "b", "structure": ',  # line 2: truncated
        "",
        json.dumps({"id": "c", "structure": srtio3.as_dict()}),
    ]
    (folder / "rows.jsonl").write_text("\n".join(lines) + "\n")
    csv_cif = cif.replace('"', "'")
    (folder / "table.csv").write_text(
        "id,cif\n"
        f'x1,"{csv_cif}"\n'
        f'x2,"{csv_cif}",extra\n'  # a field too many
        f'x3,"{csv_cif}"\n'
    )
    (folder / "frames.extxyz").write_text(
        _extxyz_frame("f1", "2.82 2.82 2.82")
        + _extxyz_frame("f2", "2.82 abc")  # a coordinate that is not a number
        + _extxyz_frame("f3", "2.82 2.82 2.82")
    )
    return folder


def test_every_bad_file_is_one_failure_and_the_read_goes_on(corpus: Path) -> None:
    result = read_source(_spec(corpus, id_key=None))

    assert sorted(r.source_id for r in result.records) == [
        "frames.extxyz#1",
        "good.cif",
        "good.json",
        "good.vasp",
        "left_handed.vasp",
        "list.json#1",
        "list.json#4",
        "rows.jsonl#1",
        "rows.jsonl#4",
        "table.csv#1",
        "table.csv#3",
    ]
    by_file: dict[str, list[str]] = {}
    for f in result.failures:
        by_file.setdefault(f.source_id.split("#")[0], []).append(f.message)
        assert f.stage == "ingest"
    for name, reason in BAD_FILES.items():
        assert len(by_file[name]) == 1, by_file[name]
        message = by_file[name][0]
        assert message.startswith(name), message
        assert reason in message, message

    # Rows, lines and frames are named in the failures of files that are partly good.
    (list_bad, list_number) = sorted(by_file["list.json"])
    assert list_bad.startswith("list.json row 2") and "unreadable structure dict" in list_bad
    assert list_number.startswith("list.json row 3") and "not a JSON object: '42'" in list_number
    (jsonl,) = by_file["rows.jsonl"]
    assert jsonl.startswith("rows.jsonl row 2") and "not a JSON object (Expecting" in jsonl
    (table,) = by_file["table.csv"]
    assert table.startswith("table.csv row 2") and "3 fields where the header has 2" in table
    assert "(lines " in table  # the CIF cell spans lines of the file
    (frame,) = by_file["frames.extxyz"]
    assert frame.startswith("frames.extxyz row 2") and "unreadable extxyz frame" in frame
    assert "the frames after it are not read" in frame

    # Every file of the folder is accounted for: records or failures, nothing passed over.
    files = {p.name for p in corpus.iterdir()}
    used = {r.source_id.split("#")[0] for r in result.records} | set(by_file)
    assert used == files
    assert result.snapshot.query["files"] == len(files)


def test_the_snapshot_of_a_folder_with_unreadable_files_is_stable(corpus: Path) -> None:
    first = read_source(_spec(corpus)).snapshot
    assert read_source(_spec(corpus)).snapshot.sha256 == first.sha256


def test_a_single_binary_cif_is_a_failure_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "photo.cif"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    result = read_source(_spec(path))
    assert result.records == []
    (failed,) = result.failures
    assert failed.source_id == "photo.cif"
    assert failed.message == (
        "photo.cif: not UTF-8 text (byte 0xff at line 1, offset 0); is it a binary file?"
    )


def test_a_folder_without_any_structure_file_is_an_error_naming_them(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SourceError) as raised:
        read_source(_spec(tmp_path))
    message = str(raised.value)
    assert "README.md, notes.txt: cannot tell the structure format" in message
    assert "known: *.cif, POSCAR*" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_a_file_without_read_permission_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "good.cif").write_text(str(CifWriter(_srtio3())))
    secret = tmp_path / "secret.cif"
    secret.write_text(str(CifWriter(_srtio3())))
    secret.chmod(0)
    try:
        result = read_source(_spec(tmp_path))
    finally:
        secret.chmod(0o644)
    assert [r.source_id for r in result.records] == ["good.cif"]
    (failed,) = result.failures
    assert failed.message == "secret.cif: cannot read the file (Permission denied)"


def test_a_bad_line_of_a_gzipped_file_names_its_row(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"structure": _nacl().as_dict()}) + "\n")
        handle.write('{"structure": {"lattice": [1, 2]}}\n')
    result = read_source(_spec(path))
    assert [r.source_id for r in result.records] == ["rows.jsonl.gz#1"]
    (failed,) = result.failures
    assert failed.message.startswith("rows.jsonl.gz row 2 (id rows.jsonl.gz#2): ")
    assert "not a pymatgen structure dict" in failed.message


def test_a_flat_cell_from_a_structure_dict_is_a_failure(tmp_path: Path) -> None:
    flat = _nacl().as_dict()
    flat["lattice"]["matrix"][2] = [0.0, 0.0, 0.0]
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(flat))
    (failed,) = read_source(_spec(path)).failures
    assert failed.message.startswith("flat.json: degenerate cell (volume 0")


def test_ingest_command_reads_past_the_bad_files(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, prefect_server
) -> None:
    from matscreen.flows.cli import main

    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    argv = ["ingest", "files", str(corpus), "--licence", "CC0-1.0", "--citation", "test"]
    assert main([*argv, "--quiet"]) == 0
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if line.strip().startswith("files ")]
    read, records, errors = (int(line.split()[i]) for i in (2, 3, 6))
    n_bad = len(BAD_FILES) + 5  # + two list.json rows, a JSON line, a CSV row, a frame
    assert (read, records, errors) == (11 + n_bad, 11, n_bad)
