"""Hostile input to the command line and the sources: one clear outcome, never a traceback.

* an infinite label is an error of its record, naming the key and value; a missing one
  (empty, NaN) stays "no label";
* an output folder that cannot be written is refused before any work, and before the
  catalog is opened;
* a spec path that is a folder, or a catalog URL that is not one, is one line naming it
  (and no password); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from matscreen.flows.cli import DEFAULT_SPEC, main
from matscreen.tasks.errors import SpecError
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import CsvCifSourceSpec, FilesSourceSpec, PropertySpec

GAP = {"band_gap": PropertySpec(column="gap", unit="eV")}


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture()
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test, rather than run for minutes, if a command gets past its checks."""
    from matscreen.flows.cli import campaign, train

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command started its work")

    monkeypatch.setattr(campaign, "_execute_campaign", started)
    monkeypatch.setattr(train, "_run", started)


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr, checked to be one ``matscreen: error:`` line."""
    err = capsys.readouterr().err
    assert err.startswith("matscreen: error: ") and err.count("\n") == 1, err
    return err.rstrip("\n")


def _cif() -> str:
    structure = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return str(CifWriter(structure))


# -- labels ---------------------------------------------------------------------------------

#: gap cell -> the label read (a float or None), or the failure message's end
LABELS = {
    "1.5": 1.5,
    "": None,
    "nan": None,
    "NaN": None,
    "inf": "band_gap: inf is not a finite number (column 'gap')",
    "-inf": "band_gap: -inf is not a finite number (column 'gap')",
    "Infinity": "band_gap: Infinity is not a finite number (column 'gap')",
    "1e999": "band_gap: 1e999 is not a finite number (column 'gap')",
}


def _write_csv(path: Path) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif", "gap"])
        for i, value in enumerate(LABELS, start=1):
            writer.writerow([f"r{i}", _cif(), value])
    return path


def _check_labels(result, file_name: str) -> None:
    got = {r.source_id: r.properties["band_gap"] for r in result.records}
    failed = {f.source_id: f.message for f in result.failures}
    for i, (value, expected) in enumerate(LABELS.items(), start=1):
        if isinstance(expected, str):
            assert failed[f"r{i}"] == f"{file_name} row {i} (id r{i}): {expected}", value
        else:
            assert got[f"r{i}"] == expected, value
    assert len(got) + len(failed) == len(LABELS)


@pytest.mark.parametrize(
    ("spec_class", "options"),
    [
        (FilesSourceSpec, {"kind": "files", "id_key": "id"}),
        (CsvCifSourceSpec, {"kind": "csv_cif", "id_column": "id", "cif_column": "cif"}),
    ],
)
def test_infinite_labels_are_errors_of_their_rows(
    tmp_path: Path, spec_class: type, options: dict[str, str]
) -> None:
    path = _write_csv(tmp_path / "gaps.csv")
    spec = spec_class(
        name="local", path=path, licence="CC0-1.0", citation=["t"], properties=GAP, **options
    )
    _check_labels(read_source(spec), "gaps.csv")


def test_infinite_json_numbers_are_errors_of_their_lines(tmp_path: Path) -> None:
    structure = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    text = json.dumps(structure.as_dict())
    path = tmp_path / "gaps.jsonl"
    path.write_text(
        f'{{"id": "a", "gap": 1.1, "structure": {text}}}\n'
        f'{{"id": "b", "gap": Infinity, "structure": {text}}}\n'
        f'{{"id": "c", "gap": -1e999, "structure": {text}}}\n'
        f'{{"id": "d", "gap": NaN, "structure": {text}}}\n'
    )
    spec = FilesSourceSpec(
        kind="files",
        name="local",
        path=path,
        licence="CC0-1.0",
        citation=["t"],
        id_key="id",
        properties=GAP,
    )
    result = read_source(spec)
    assert {r.source_id: r.properties["band_gap"] for r in result.records} == {
        "a": 1.1,
        "d": None,
    }
    assert [f.message for f in result.failures] == [
        "gaps.jsonl row 2 (id b): band_gap: inf is not a finite number (column 'gap')",
        "gaps.jsonl row 3 (id c): band_gap: -inf is not a finite number (column 'gap')",
    ]


# -- output folders -------------------------------------------------------------------------


@pytest.fixture()
def unwritable(tmp_path: Path) -> Path:
    """A folder nothing can be written into (a read-only folder; for root, a kernel one)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    for candidate in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            fd, probe = tempfile.mkstemp(dir=candidate)
        except OSError:
            yield candidate
            return
        os.close(fd)
        os.unlink(probe)
    pytest.skip("no folder here refuses root's writes")


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "results.txt"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("case", ["existing file", "under a file", "unwritable"])
def test_campaign_output_that_cannot_be_written_is_refused_before_any_work(
    case: str, home: Path, tmp_path: Path, request, capsys, no_work
) -> None:
    output, reason = {
        "existing file": (lambda: _a_file(tmp_path), "it is a file, not a folder"),
        "under a file": (lambda: _a_file(tmp_path) / "run", "results.txt is a file"),
        "unwritable": (lambda: request.getfixturevalue("unwritable"), "cannot write there ("),
    }[case]
    folder = output()
    assert main(["campaign", "run", str(DEFAULT_SPEC), "--output", str(folder)]) == 2
    line = _error_line(capsys)
    assert line.startswith(f"matscreen: error: output folder {folder}: ")
    assert reason in line
    assert not home.exists()  # no catalog, no artifacts


def test_export_and_reproduce_refuse_their_output_before_the_catalog_opens(
    home: Path, tmp_path: Path, capsys, no_work
) -> None:
    under_a_file = _a_file(tmp_path) / "out"
    expected = (
        f"matscreen: error: output folder {under_a_file}: "
        f"{under_a_file.parent} is a file, not a folder"
    )
    for argv in (
        ["export", "prov", "some-run", "--output", str(under_a_file)],
        ["export", "rocrate", "some-run", "--output", str(under_a_file)],
        ["reproduce", "some-run", "--output", str(under_a_file)],
    ):
        assert main(argv) == 2
        assert _error_line(capsys) == expected
    assert not home.exists()


def test_train_refuses_a_model_folder_it_cannot_write(
    perovskite_csv: Path, home: Path, tmp_path: Path, capsys, no_work
) -> None:
    with open(perovskite_csv, newline="") as handle:
        rows = [r for _, r in zip(range(12), csv.DictReader(handle), strict=False)]
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif", "gap"])
        writer.writerows([r["material_id"], r["cif"], r["ind_gap"]] for r in rows)
    out = _a_file(tmp_path)
    argv = ["train", "--input", str(train), "--target", "gap", "--folds", "2", "--out", str(out)]
    assert main(argv) == 2
    assert (
        _error_line(capsys) == f"matscreen: error: output folder {out}: it is a file, not a folder"
    )
    assert not home.exists()


def test_a_writable_output_folder_passes_and_keeps_nothing_of_the_check(
    home: Path, tmp_path: Path
) -> None:
    from matscreen.tasks.files import writable_folder

    folder = tmp_path / "new" / "nested"
    assert writable_folder(folder) == folder
    assert folder.is_dir() and list(folder.iterdir()) == []


# -- spec paths and settings ----------------------------------------------------------------


def test_a_spec_path_that_is_a_folder_is_one_line(home: Path, tmp_path: Path, capsys) -> None:
    assert main(["campaign", "run", str(tmp_path)]) == 2
    assert _error_line(capsys) == (
        f"matscreen: error: campaign spec {tmp_path} is a folder, not a YAML file"
    )
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"name: x\n\xff\xfe")
    assert main(["campaign", "run", str(binary)]) == 2
    assert _error_line(capsys) == (
        f"matscreen: error: campaign spec {binary} is not UTF-8 text (byte 8)"
    )
    assert not home.exists()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://scott:s3cret@localhost:abc/db", "the port is not a number"),
        ("postgresql+psycopg://scott:s3c@ret@localhost:abc/db", "the port is not a number"),
        ("postgresql+psycopg://scott:s3cret@localhost:99999/db", "port 99999 is out of range"),
        ("sqlite:garbage", "not a database URL (e.g. sqlite:////path/to/catalog.sqlite"),
        ("s3cret", "not a database URL"),
    ],
)
def test_a_catalog_url_that_is_not_one_is_one_line_without_the_password(
    url: str, reason: str, home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MATSCREEN_CATALOG_URL", url)
    for argv in (["find", "runs"], ["campaign", "run", str(DEFAULT_SPEC)]):
        assert main(argv) == 2
        line = _error_line(capsys)
        assert line.startswith("matscreen: error: MATSCREEN_CATALOG_URL ")
        assert reason in line
        if "://" in url:
            assert "s3c" not in line and "scott:***@" in line
    assert not home.exists()


def test_a_bad_setting_names_its_variable(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "many")
    assert main(["find", "runs"]) == 2
    assert _error_line(capsys).startswith(
        "matscreen: error: MATSCREEN_DASK_WORKERS='many': Input should be a valid integer"
    )


def test_debug_shows_the_traceback_instead(home: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder, not a YAML file"):
        main(["--debug", "campaign", "run", str(tmp_path)])


def test_the_installed_command_prints_one_line_or_with_debug_the_traceback(
    home: Path, tmp_path: Path
) -> None:
    command = Path(sys.executable).parent / "matscreen"
    env = {
        **os.environ,
        "MATSCREEN_HOME": str(home),
        "MATSCREEN_CATALOG_URL": "postgresql+psycopg://scott:s3cret@localhost:abc/db",
    }
    plain = subprocess.run(
        [str(command), "find", "runs"], env=env, capture_output=True, text=True, timeout=300
    )
    assert plain.returncode == 2
    assert plain.stderr == (
        "matscreen: error: MATSCREEN_CATALOG_URL postgresql+psycopg://scott:***@localhost:abc/db:"
        " the port is not a number\n"
    )
    debug = subprocess.run(
        [str(command), "--debug", "find", "runs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "SettingsError: MATSCREEN_CATALOG_URL" in debug.stderr
    assert "s3cret" not in debug.stderr
    assert not home.exists()


# -- cases found by a hostile tester ---------------------------------------------------------
BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    ]
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "is larger than 1 MiB: not a spec"),
        (BOMB, "expands to more than 200,000 values"),
    ],
)
def test_a_spec_that_would_never_finish_loading_is_refused(
    home: Path, no_work: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    text: str | None, expected: str,
) -> None:  # fmt: skip
    spec = Path("/dev/zero") if text is None else tmp_path / "bomb.yaml"
    if text is not None:
        spec.write_text(text)
    assert main(["campaign", "run", str(spec)]) == 2
    assert expected in _error_line(capsys)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("{target: heat_of_formation, params: {n_estimators: 99999999999999999999999}}",
         "n_estimators: 99999999999999999999999 is not valid: must be at most 100,000"),
        ("{target: heat_of_formation, clip_min: .nan}", "clip_min: Input should be a finite"),
        ("{target: band_gap, kind: two_stage_gap, metal_threshold: .inf}",
         "metal_threshold: Input should be a finite"),
    ],
)  # fmt: skip
def test_numbers_no_fit_can_use_are_refused_at_load(
    home: Path, no_work: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    model: str, expected: str,
) -> None:  # fmt: skip
    import yaml

    document = yaml.safe_load(DEFAULT_SPEC.read_text())
    document["models"] = [yaml.safe_load(model)]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document))
    assert main(["campaign", "run", str(spec)]) == 2
    assert expected in _error_line(capsys)


@pytest.mark.parametrize("value", ["1e308", "-3.5e38", 1e300])
def test_a_label_too_large_for_the_models_is_an_error_of_its_record(value: object) -> None:
    from matscreen.tasks.sources.properties import NotFiniteError, as_number

    with pytest.raises(NotFiniteError, match="too large for a property value"):
        as_number(value)
    assert as_number("-1e3") == -1000.0
    with pytest.raises(ValueError, match="'1_000' is not a number"):
        as_number("1_000")


@pytest.mark.parametrize("value", ["lots", "2", "-1"])
def test_a_worker_memory_limit_dask_cannot_use_is_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("MATSCREEN_DASK_MEMORY_LIMIT", value)
    assert main(["find", "runs"]) == 2
    assert _error_line(capsys).startswith(
        f"matscreen: error: MATSCREEN_DASK_MEMORY_LIMIT='{value}'"
    )


def test_an_output_folder_holding_a_source_or_inside_the_home_is_refused(
    home: Path, no_work: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "ov" / "ranking.csv"
    source.parent.mkdir()
    source.write_text("material_id,cif\n")
    import yaml

    document = yaml.safe_load(DEFAULT_SPEC.read_text())
    document["sources"][0]["path"] = str(source)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(document))
    assert main(["campaign", "run", str(spec), "--output", str(source.parent)]) == 2
    assert "which source cmr_perovskites reads" in _error_line(capsys)
    assert main(["campaign", "run", str(spec), "--output", str(home / "out")]) == 2
    assert "inside matscreen's home" in _error_line(capsys)
    assert source.read_text() == "material_id,cif\n"


def test_a_spec_that_is_not_yaml_is_one_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nmodels:\n  - {target: a\n  sources: [\n")
    assert main(["campaign", "run", str(spec)]) == 2
    assert "is not valid YAML: " in _error_line(capsys)


def test_an_empty_output_path_is_refused(
    home: Path, no_work: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["campaign", "run", "--output", ""])
    assert stopped.value.code == 2
    assert "an empty path" in capsys.readouterr().err


def test_a_home_that_does_not_exist_is_not_created_by_a_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "mistyped"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    for command in (["find", "runs"], ["verify"], ["show", "x"]):
        assert main(command) == 2
        assert "no catalog at" in _error_line(capsys)
    assert not (tmp_path / "mistyped").exists()
    monkeypatch.setenv("MATSCREEN_CATALOG_URL", "sqlite:///")
    assert main(["find", "runs"]) == 2
    assert "a catalog in memory keeps nothing" in _error_line(capsys)


def test_a_catalog_file_that_is_not_a_database_is_one_line(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "catalog.sqlite"
    garbage.write_bytes(os.urandom(8192))
    monkeypatch.setenv("MATSCREEN_CATALOG_URL", f"sqlite:///{garbage}")
    assert main(["find", "runs"]) == 2
    assert "cannot open catalog at sqlite:///" in _error_line(capsys)


def test_a_training_csv_row_with_a_field_too_many_is_refused_naming_it(tmp_path: Path) -> None:
    from matscreen.tasks.errors import InputError
    from matscreen.tasks.models.inputs import check_input

    path = tmp_path / "train.csv"
    path.write_text('id,cif,gap\na,"data_x",1.0\nb,"data_y",2.0,extra\n')
    with pytest.raises(InputError, match=r"train\.csv row 2: 4 fields where the header has 3"):
        check_input(path, "gap")
    # A repeated column could be read two ways: refused before any work.
    path.write_text('id,cif,gap,gap\na,"data_x",1.0,2.0\n')
    with pytest.raises(InputError, match=r"column\(s\) \['gap'\] appear twice"):
        check_input(path, "gap")


def test_a_prediction_csv_row_with_a_field_too_many_is_left_to_the_source(tmp_path: Path) -> None:
    # Prediction needs no label: the malformed row is not refused up front; the files
    # source that reads the input reports it as an error of that row, the others are read.
    from matscreen.tasks.models.inputs import check_input, input_source

    path = tmp_path / "new.csv"
    path.write_text('\ufeffid,cif\na,"data_x"\nb,"data_y",extra\n')  # with a byte-order mark
    assert check_input(path) == 1
    result = read_source(input_source(path))
    messages = [f.message for f in result.failures]
    assert any("3 fields where the header has 2" in m for m in messages)
    assert {f.source_id for f in result.failures} >= {"a"}  # its CIF is unreadable
