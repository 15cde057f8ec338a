"""Shared fixtures: the real data folder and small subsets built from it at test time."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from matscreen.catalog import Catalog, schema
from matscreen.flows.settings import Settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database: MATSCREEN_TEST_POSTGRES_URL if set, else a server this test
    run starts on loopback (Debian's postgresql package) and stops at the end."""
    from pg_server import postgres_server, server_binaries

    if os.environ.get("MATSCREEN_TEST_POSTGRES_URL"):
        yield os.environ["MATSCREEN_TEST_POSTGRES_URL"]
        return
    if server_binaries() is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    with tempfile.TemporaryDirectory(prefix="matscreen-pg-") as folder:
        os.chmod(folder, 0o755)
        with postgres_server(Path(folder)) as url:
            yield url


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server (SQLite, loopback) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


#: A CIF text that no reader can turn into a structure.
BROKEN_CIF = "data_broken\n_cell_length_a 4.0\nloop_\n _atom_site_label\n Xx\n"


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh home under the test's folder, a two-worker LocalCluster, the default catalog."""
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "2")
    for name in ("MATSCREEN_CATALOG_URL", "MATSCREEN_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return Settings()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh catalog on a SQLite file, and on a real PostgreSQL server (its tables are
    dropped afterwards)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with Catalog(url) as opened:
        yield opened
        if request.param == "postgresql":
            schema.metadata.drop_all(opened.engine)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (``MATSCREEN_DATA_DIR`` or ``../shared/data``)."""
    path = Settings().data_dir
    if not (path / "perovskites_cmr" / "cubic_perovskites.csv").is_file():
        pytest.fail(f"the shared data folder is missing: {path} (set MATSCREEN_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def perovskite_csv(data_dir: Path) -> Path:
    """The real CMR cubic perovskites file, read where it lies."""
    return data_dir / "perovskites_cmr" / "cubic_perovskites.csv"


def write_subset(
    source: Path,
    target: Path,
    n_rows: int,
    broken_row: int | None = None,
    unknown_element_row: int | None = None,
) -> Path:
    """Copy the header and the first ``n_rows`` rows of ``source`` into ``target``.

    If ``broken_row`` (1-based) is given, that row's CIF is replaced by unreadable text. If
    ``unknown_element_row`` is given, that row's first atom becomes oganesson: the CIF still
    reads, but featurizers lack data for the element (a structure that fails to featurize).
    """
    with open(source, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for _, row in zip(range(n_rows), reader, strict=False)]
    column = header.index("cif")
    if broken_row is not None:
        rows[broken_row - 1][column] = BROKEN_CIF
    if unknown_element_row is not None:
        lines = rows[unknown_element_row - 1][column].splitlines()
        first_atom = lines.index(" _atom_site_occupancy") + 1
        element, label, *rest = lines[first_atom].split()
        lines[first_atom] = "  " + "  ".join(["Og", "Og" + label[len(element) :], *rest])
        rows[unknown_element_row - 1][column] = "\n".join(lines) + "\n"
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return target


@pytest.fixture(scope="session")
def perovskite_subset(perovskite_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 241 real perovskites; row 7 has an unreadable CIF, row 12 an atom without
    element data."""
    folder = tmp_path_factory.mktemp("subset")
    return write_subset(
        perovskite_csv, folder / "perovskites_241.csv", 241, broken_row=7, unknown_element_row=12
    )


SUBSET_SPEC = """
name: perovskite-subset
description: Castelli's water-splitting screen on a subset of the CMR perovskites.
sources:
  - name: cmr_perovskites
    kind: csv_cif
    path: {path}
    id_column: material_id
    cif_column: cif
    properties:
      heat_of_formation: {{column: heat_ref, unit: eV}}
      band_gap: {{max_of: [dir_gap, ind_gap], unit: eV}}
    licence: "MIT (CDVAE split of the CMR data)"
    citation: ["Castelli et al., Energy Environ. Sci. 5, 9034 (2012)"]
split: {{method: random, test_fraction: 0.2, seed: 7}}
featurization:
  preset: fast
  featurizers:
    - {{input: structure, cls: matscreen.tasks.featurize.site_resolved.CoordinationElementProperty}}
  batch_size: 40
  time_limit_s: 60
models:
  - {{target: heat_of_formation, params: {{n_estimators: 150}}}}
  - {{target: band_gap, params: {{n_estimators: 150}}, clip_min: 0.0}}
criteria:
  - {{property: heat_of_formation, max: 0.21, unit: eV}}
  - {{property: band_gap, min: 1.4, max: 3.1, unit: eV}}
shortlist_size: 10
"""


@pytest.fixture()
def subset_spec(perovskite_subset: Path, tmp_path: Path) -> Path:
    """A campaign spec over :func:`perovskite_subset`."""
    spec = tmp_path / "subset.yaml"
    spec.write_text(SUBSET_SPEC.format(path=perovskite_subset))
    return spec


@dataclass(frozen=True)
class CampaignRuns:
    """Two finished runs of the subset campaign in one catalog (see :func:`campaign_runs`).

    ``runs[i]`` holds ``run_id``, ``output_dir`` and ``spec`` of run ``i``.
    """

    home: Path
    catalog_url: str
    artifact_dir: Path
    runs: list[dict[str, Any]]


@pytest.fixture(scope="session")
def campaign_runs(
    prefect_server, perovskite_csv: Path, tmp_path_factory: pytest.TempPathFactory
) -> CampaignRuns:
    """Two real campaign runs sharing one catalog, made once per test session.

    Run 0 screens the first 241 perovskites (row 7 unreadable, row 12 unfeaturizable), run 1
    the first 300 (the same rows plus 59 more, intact), so the two rankings differ by new
    candidates and rank moves. Both go through the real Prefect server and a 2-worker Dask
    LocalCluster.
    """
    from matscreen.flows.cli import main

    folder = tmp_path_factory.mktemp("campaign_runs")
    home = folder / "home"
    runs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATSCREEN_HOME", str(home))
        patch.setenv("MATSCREEN_DASK_WORKERS", "2")
        for name in ("MATSCREEN_CATALOG_URL", "MATSCREEN_DASK_ADDRESS"):
            patch.delenv(name, raising=False)
        for i, n_rows in enumerate((241, 300)):
            subset = write_subset(
                perovskite_csv,
                folder / f"perovskites_{n_rows}.csv",
                n_rows,
                broken_row=7,
                unknown_element_row=12,
            )
            spec = folder / f"subset_{n_rows}.yaml"
            spec.write_text(SUBSET_SPEC.format(path=subset))
            out = folder / f"run{i}"
            if main(["campaign", "run", str(spec), "--output", str(out)]) != 0:
                pytest.fail(f"campaign run {i} failed")
            run_id = json.loads((out / "metrics.json").read_text())["run_id"]
            runs.append({"run_id": run_id, "output_dir": out, "spec": spec})
        settings = Settings()
    return CampaignRuns(home, settings.catalog_url, settings.artifact_dir, runs)
