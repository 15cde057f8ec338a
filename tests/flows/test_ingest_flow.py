"""The ingest flow and ``matscreen ingest``: two real sources, duplicates linked, re-runs."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from matscreen.catalog import Catalog
from matscreen.flows.cli import main
from matscreen.flows.ingest import ingest_structures
from matscreen.flows.settings import Settings


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    return Settings()


def _sources(data_dir: Path) -> list[dict]:
    return [
        {
            "kind": "files",
            "name": "mp",
            "path": str(data_dir / "materials_project" / "summary_200.jsonl"),
            "licence": "CC-BY-4.0",
            "citation": ["A. Jain et al., APL Materials 1, 011002 (2013)"],
            "properties": {
                "band_gap": {"column": "band_gap", "unit": "eV"},
                "formation_energy_per_atom": {
                    "column": "formation_energy_per_atom",
                    "unit": "eV/atom",
                },
            },
        },
        {
            "kind": "files",
            "name": "alexandria",
            "path": str(data_dir / "optimade" / "alexandria_98.jsonl"),
            "id_key": "entry_id",
            "licence": "CC-BY-4.0",
            "citation": ["J. Schmidt et al., Mater. Today Phys. 2022"],
            "properties": {
                "band_gap": {"column": "targets.regression.band_gap_ind", "unit": "eV"},
            },
        },
    ]


def test_two_sources_linked_and_counted(
    prefect_server, settings: Settings, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "records.jsonl"
    first = ingest_structures(sources=_sources(data_dir), output=str(out))
    summary = {s["source"]: s for s in first["sources"]}
    assert {k: summary["mp"][k] for k in ("read", "records", "new", "duplicates", "errors")} == {
        "read": 200,
        "records": 200,
        "new": 200,
        "duplicates": 2,
        "errors": 0,
    }
    # Alexandria's first two entries are the Ac crystals MP already gave.
    assert summary["alexandria"]["records"] == 98 and summary["alexandria"]["duplicates"] == 2

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert first["records_written"] == len(lines) == 298
    by_id = {line["id"]: line for line in lines}
    alex = [line for line in lines if line["source"] == "alexandria"]
    assert alex[0]["duplicate_of"] == "mp:summary_200.jsonl#2" and alex[0]["structure"] == {}
    assert by_id["mp:summary_200.jsonl#2"]["formula"] == "Ac"

    with Catalog(settings.catalog_url) as catalog:
        links = catalog.edges(relation="alternateOf")
        assert len(links) == 4
        names = {
            catalog.get_entity(e.subject_id).name: catalog.get_entity(e.object_id).name
            for e in links
        }
        assert names[alex[0]["id"]] == "mp:summary_200.jsonl#2"
        snapshots = catalog.find_entities(kind="source_snapshot")
        assert {s.name for s in snapshots} == {"mp", "alexandria"}

    again = ingest_structures(sources=_sources(data_dir))
    assert [s["new"] for s in again["sources"]] == [0, 0]
    assert [s["snapshot_id"] for s in again["sources"]] == [
        s["snapshot_id"] for s in first["sources"]
    ]


def test_cli_prints_the_summary(prefect_server, settings: Settings, capsys) -> None:
    argv = ["ingest", "prototypes", "perovskite_ABX3", "--quiet"]
    argv += ["--site", "A=Ca,Sr,Ba", "--site", "B=Ti,Zr", "--site", "X=O,O2N"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    row = next(line.split() for line in printed.splitlines() if line.startswith("  prototypes"))
    # Ca/Sr/Ba (2+) with Ti/Zr (4+) balance O3 (6-) but never O2N (7-): 6 candidates.
    assert row[:7] == ["prototypes", "prototypes", "6", "6", "6", "0", "0"]


def _row(printed: str, source: str) -> list[str]:
    return next(line.split() for line in printed.splitlines() if line.startswith(f"  {source} "))


def test_cli_reads_the_materials_project(
    prefect_server, settings: Settings, data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from servers.mp import load_summary_documents, mp_server

    key = secrets.token_hex(16)  # throwaway; mp-api wants 32 characters
    monkeypatch.setenv("MP_API_KEY", key)
    documents = load_summary_documents(data_dir / "materials_project" / "summary_200.jsonl")
    gaps = [d for d in documents if 1.0 <= d["band_gap"] <= 3.0]
    with mp_server(documents, key, db_version="2023.11.1") as (url, _):
        argv = ["ingest", "mp", "--endpoint", url, "--range", "band_gap=1:3", "--quiet"]
        assert main(argv) == 0
    printed = capsys.readouterr()
    n = str(len(gaps))
    assert _row(printed.out, "mp") == ["mp", "mp", n, n, n, "0", "0", "2023.11.1"]
    assert key not in printed.out + printed.err


def test_cli_reads_aflux(prefect_server, settings: Settings, data_dir: Path, capsys) -> None:
    from servers.aflux import AfluxServer, load_example_entries

    entries = load_example_entries(data_dir / "aflow")
    oxides = [e for e in entries if "O" in e["species"]]
    with AfluxServer(entries) as server:
        argv = ["ingest", "aflow", "--endpoint", server.url, "--species", "O"]
        assert main([*argv, "--licence", "AFLOW terms of use", "--quiet"]) == 0
        first = capsys.readouterr().out
        # A re-run lists the entries and takes their saved documents.
        assert main([*argv, "--licence", "AFLOW terms of use", "--quiet"]) == 0
        second = capsys.readouterr().out
    row = _row(first, "aflow")
    n = str(len(oxides))
    assert row[:7] == ["aflow", "aflow", n, n, n, "0", "0"]
    assert f"  aflow: incremental read, {n} new, 0 changed, 0 unchanged" in first
    assert _row(second, "aflow")[:7] == ["aflow", "aflow", n, n, "0", "0", "0"]
    assert (
        f"  aflow: incremental read, 0 new, 0 changed, {n} unchanged, 0 removed; "
        "0 documents fetched"
    ) in second
