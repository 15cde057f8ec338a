"""The offline example campaigns read real files of the shared data folder.

The photovoltaic-absorber and transparent-conductor specs must run without a network:
every source is a local file under the data folder, the columns it names are in that
file, and the properties the criteria bound come out of its records as numbers. The
campaigns themselves are not run here (minutes each); their first records are read through
the real source reader.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from matscreen.flows.settings import REPOSITORY_ROOT
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import load_spec

CAMPAIGNS = REPOSITORY_ROOT / "deploy" / "campaigns"
OFFLINE = ["photovoltaic-absorbers.yaml", "transparent-conductors.yaml"]


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


@pytest.mark.parametrize("name", OFFLINE)
def test_sources_are_files_of_the_shared_data_folder(name: str, data_dir: Path) -> None:
    spec = load_spec(CAMPAIGNS / name, data_dir)
    for source in spec.sources:
        assert source.kind in ("csv_cif", "files"), f"{source.name} needs a network"
        path = Path(source.path)
        assert path.is_relative_to(data_dir.resolve()) and path.is_file()
        if source.kind == "csv_cif":
            wanted = {source.id_column, source.cif_column}
            wanted |= {column for prop in source.properties.values() for column in prop.columns}
            assert wanted <= set(_header(path)), f"{path.name} lacks {wanted - set(_header(path))}"


@pytest.mark.parametrize("name", OFFLINE)
def test_criteria_bound_properties_the_sources_read(name: str, data_dir: Path) -> None:
    spec = load_spec(CAMPAIGNS / name, data_dir)
    bounded = {criterion.property for criterion in spec.criteria}
    assert bounded <= set(spec.units())
    read: dict[str, list[float]] = {prop: [] for prop in bounded}
    for source in spec.sources:
        result = read_source(source.model_copy(update={"limit": 20}))
        assert result.failures == [] and len(result.records) == 20
        for record in result.records:
            for prop in bounded & set(record.properties):
                value = record.properties[prop]
                if value is not None and math.isfinite(value):
                    read[prop].append(value)
    assert all(len(values) == 20 * len(spec.sources) for values in read.values()), read
    assert all(value >= 0 for value in read["band_gap"])  # band gaps in eV, never negative
