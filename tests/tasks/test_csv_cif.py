"""Reading CSV files of CIF rows: real perovskites, a broken row, bad columns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from matscreen.tasks.errors import SourceError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import CsvCifSourceSpec, PropertySpec


def _spec(path: Path, **overrides) -> CsvCifSourceSpec:
    fields = {
        "kind": "csv_cif",
        "name": "cmr",
        "path": path,
        "id_column": "material_id",
        "properties": {
            "heat_of_formation": PropertySpec(column="heat_ref", unit="eV"),
            "band_gap": PropertySpec(max_of=["dir_gap", "ind_gap"], unit="eV"),
        },
        "licence": "MIT",
        "citation": ["Castelli et al. (2012)"],
    }
    fields.update(overrides)
    return CsvCifSourceSpec(**fields)


def test_reads_real_rows_and_records_the_broken_one(perovskite_subset: Path) -> None:
    result = read_source(_spec(perovskite_subset))
    frame = pd.read_csv(perovskite_subset, dtype={"material_id": str})

    assert len(result.records) == 240
    assert len(result.failures) == 1
    failure = result.failures[0]
    assert failure.row == 7 and failure.stage == "ingest"
    assert failure.source_id == frame.material_id[6]
    assert f"row 7 (id {frame.material_id[6]})" in failure.message

    snapshot = result.snapshot
    assert snapshot.sha256 == file_sha256(perovskite_subset)
    assert snapshot.n_rows == 241 and snapshot.licence == "MIT"

    first = result.records[0]
    assert first.id == f"cmr:{frame.material_id[0]}"
    assert first.properties["heat_of_formation"] == pytest.approx(frame.heat_ref[0])
    assert first.properties["band_gap"] == max(frame.dir_gap[0], frame.ind_gap[0])
    assert first.units == {"heat_of_formation": "eV", "band_gap": "eV"}
    assert len(first.structure["sites"]) == 5  # five-atom ABX3 cells


def test_band_gap_is_the_larger_of_direct_and_indirect(perovskite_csv: Path) -> None:
    result = read_source(_spec(perovskite_csv, limit=600))
    frame = pd.read_csv(perovskite_csv, nrows=600, dtype={"material_id": str})
    expected = frame.set_index("material_id")[["dir_gap", "ind_gap"]].max(axis=1)
    gaps = {r.source_id: r.properties["band_gap"] for r in result.records}
    assert gaps == pytest.approx(expected.to_dict())
    assert any(frame.dir_gap != frame.ind_gap)  # the rule matters on this data


def test_non_numeric_property_fails_that_row_only(tmp_path: Path, perovskite_subset: Path) -> None:
    frame = pd.read_csv(perovskite_subset, nrows=5)
    frame["heat_ref"] = frame["heat_ref"].astype(object)
    frame.loc[2, "heat_ref"] = "n/a eV"
    path = tmp_path / "five.csv"
    frame.to_csv(path, index=False)
    result = read_source(_spec(path))
    assert len(result.records) == 4
    assert "column 'heat_ref' (heat_of_formation) is not a number: 'n/a eV'" in (
        result.failures[0].message
    )


def test_duplicate_id_fails_the_second_row(tmp_path: Path, perovskite_subset: Path) -> None:
    frame = pd.read_csv(perovskite_subset, nrows=4)
    frame.loc[3, "material_id"] = frame.loc[0, "material_id"]
    path = tmp_path / "dup.csv"
    frame.to_csv(path, index=False)
    result = read_source(_spec(path))
    assert len(result.records) == 3
    assert result.failures[0].row == 4 and "duplicate id" in result.failures[0].message


def test_missing_column_names_file_and_column(perovskite_subset: Path) -> None:
    spec = _spec(perovskite_subset, id_column="mp_id")
    with pytest.raises(SourceError, match=r"perovskites_241\.csv lacks column\(s\) \['mp_id'\]"):
        read_source(spec)


def test_a_row_with_a_field_too_many_fails_alone_and_a_gzipped_file_reads_the_same(
    tmp_path: Path, perovskite_subset: Path
) -> None:
    import csv
    import gzip

    # The CSV is read row by row: the bad row is named and the rows after it are read.
    with open(perovskite_subset, newline="") as handle:
        header, *rows = list(csv.reader(handle))[:4]
    rows[1].append("a field too many")
    broken = tmp_path / "broken.csv"
    with open(broken, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    result = read_source(_spec(broken))
    assert [r.row for r in result.records] == [1, 3]
    assert result.failures[0].row == 2
    assert f"{len(header) + 1} fields where the header has {len(header)}" in (
        result.failures[0].message
    )

    packed = tmp_path / "perovskites.csv.gz"
    packed.write_bytes(gzip.compress(perovskite_subset.read_bytes()))
    plain, zipped = read_source(_spec(perovskite_subset)), read_source(_spec(packed))
    assert [r.structure for r in zipped.records] == [r.structure for r in plain.records]
    assert [r.properties for r in zipped.records] == [r.properties for r in plain.records]
    assert [f.message for f in zipped.failures] == [
        f.message.replace("perovskites_241.csv", "perovskites.csv.gz") for f in plain.failures
    ]


def test_a_file_that_is_not_utf8_or_repeats_a_column_is_refused_naming_it(
    tmp_path: Path, perovskite_subset: Path
) -> None:
    import csv

    # The bad byte is named by its line, after the last row read.
    with open(perovskite_subset, newline="") as handle:
        header, *rows = list(csv.reader(handle))[:4]
    binary = tmp_path / "binary.csv"
    with open(binary, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    line = binary.read_bytes().count(b"\n") + 1
    binary.write_bytes(binary.read_bytes() + b"x1,\xff\xfe\n")
    with pytest.raises(SourceError, match=r"source cmr: cannot read .*binary\.csv as CSV") as bad:
        read_source(_spec(binary))
    assert "after row 3" in str(bad.value) and f"line {line}, byte 4 of it" in str(bad.value)
    twice = tmp_path / "twice.csv"
    text = perovskite_subset.read_text()
    header, rest = text.split("\n", 1)
    twice.write_text(header + ",heat_ref\n" + rest)
    with pytest.raises(SourceError, match=r"twice\.csv has column\(s\) \['heat_ref'\] more"):
        read_source(_spec(twice))


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzipped_file_is_one_line_naming_it(
    tmp_path: Path, perovskite_subset: Path, damage: str
) -> None:
    import gzip

    packed = gzip.compress(perovskite_subset.read_bytes())
    path = tmp_path / "perovskites.csv.gz"
    if damage == "truncated":
        path.write_bytes(packed[: len(packed) // 2])
    else:
        middle = len(packed) // 2
        path.write_bytes(packed[:middle] + bytes(b ^ 0xFF for b in packed[middle:]))
    with pytest.raises(SourceError, match=r"source cmr: cannot read .*perovskites\.csv\.gz as CSV"):
        read_source(_spec(path))


def test_na_marks_of_spreadsheets_are_missing_values(
    tmp_path: Path, perovskite_subset: Path
) -> None:
    import csv

    with open(perovskite_subset, newline="") as handle:
        header, *rows = list(csv.reader(handle))[:7]
    column = header.index("heat_ref")
    for row, mark in zip(rows, ["NA", "N/A", "#N/A", "<NA>", "n/a"], strict=False):
        row[column] = mark
    path = tmp_path / "marks.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    result = read_source(_spec(path))
    assert not result.failures
    assert [r.properties["heat_of_formation"] for r in result.records][:5] == [None] * 5
    assert result.records[5].properties["heat_of_formation"] == float(rows[5][column])
