"""A campaign that learns from one database and screens another: the MP and the OQMD.

The example spec deploy/campaigns/mp-oqmd-oxide-gaps.yaml names the real endpoints; here
they are pointed at loopback servers speaking the same protocols — MP's REST API (through
mp-api's MPRester) serving 200 real summary documents, and the optimade package's
reference server serving 200 real OQMD entries — and the filters are widened to fit the
sample. The test checks that the models learn from MP alone and rank every OQMD entry (or
report it), that structures repeated across and within the databases are linked and used
once, that the hull's reference phases are read from MP through mp-api for the
candidates' chemical systems, and that a shortlisted OQMD candidate traces back to its
OPTIMADE snapshot with its licence. The MP key never lands in the catalog or the outputs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import optimade
import pandas as pd
import pytest
import yaml
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure
from servers.mp import load_summary_documents, mp_server
from servers.optimade import oqmd_document, oqmd_structure, read_jsonl, reference_server

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.lineage import lineage
from matscreen.flows.cli import REPOSITORY_ROOT, main
from matscreen.flows.settings import Settings

SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "mp-oqmd-oxide-gaps.yaml"
#: A throwaway key made for this test run (mp-api wants 32 characters); never a real one.
API_KEY = secrets.token_hex(16)


@pytest.fixture(scope="module")
def endpoints(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    oqmd_rows = read_jsonl(data_dir / "optimade" / "oqmd_200.jsonl")
    documents = [oqmd_document(row, "2024-04-19T00:00:00Z") for row in oqmd_rows]
    mp_documents = load_summary_documents(data_dir / "materials_project" / "summary_200.jsonl")
    with (
        mp_server(mp_documents, API_KEY, db_version="2023.11.1") as (mp_url, mp),
        reference_server(documents, tmp_path_factory.mktemp("optimade")) as optimade_url,
    ):
        yield {
            "mp": mp_url,
            "mp_server": mp,
            "optimade": optimade_url,
            "mp_documents": mp_documents,
            "oqmd_rows": oqmd_rows,
        }


def _spec(tmp_path: Path, endpoints: dict) -> Path:
    data = yaml.safe_load(SPEC.read_text())
    mp, oqmd = data["sources"]
    mp.update(endpoint=endpoints["mp"], api_key_env="MATSCREEN_TEST_MP_KEY", chunk_size=80)
    del mp["elements"]  # the sample's 200 MP documents hold only 20 oxides
    oqmd.update(base_url=endpoints["optimade"], filter="nsites <= 40", page_limit=50)
    data["stability"]["mp"].update(endpoint=endpoints["mp"], api_key_env="MATSCREEN_TEST_MP_KEY")
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _system(formula: str) -> str:
    from pymatgen.core import Composition

    return Composition(formula).chemical_system


def _repeats(mp_documents: list[dict], oqmd_rows: list[dict]) -> int:
    """How many records repeat an earlier structure, judged directly with pymatgen."""
    kept: list[Structure] = []
    repeats = 0
    matcher = StructureMatcher()
    structures = [Structure.from_dict(d["structure"]) for d in mp_documents]
    structures += [oqmd_structure(row) for row in oqmd_rows]
    for structure in structures:
        volume = structure.volume / len(structure)
        if any(
            s.composition.reduced_formula == structure.composition.reduced_formula
            and abs(s.volume / len(s) - volume) <= 0.1 * s.volume / len(s)
            and matcher.fit(s, structure)
            for s in kept
        ):
            repeats += 1
        else:
            kept.append(structure)
    return repeats


@pytest.mark.slow
def test_campaign_on_mp_and_oqmd(
    prefect_server, endpoints: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "2")
    monkeypatch.setenv("MATSCREEN_TEST_MP_KEY", API_KEY)
    for name in ("MATSCREEN_CATALOG_URL", "MATSCREEN_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    out = tmp_path / "run"

    assert main(["campaign", "run", str(_spec(tmp_path, endpoints)), "--output", str(out)]) == 0
    printed = capsys.readouterr()

    metrics = json.loads((out / "metrics.json").read_text())
    counts = metrics["counts"]
    assert counts["records"] == 400 and counts["ingest_failures"] == 0
    repeats = _repeats(endpoints["mp_documents"], endpoints["oqmd_rows"])
    assert repeats >= 2  # MP's sample itself holds two structures twice
    assert counts["duplicates"] == repeats
    # The models learn from MP alone; every OQMD entry is a candidate.
    with Catalog(settings.catalog_url) as catalog:
        linked = catalog.edges(relation="alternateOf")
        repeated = {e.name for e in catalog.get_entities([edge.subject_id for edge in linked])}
        errors = {e.name: e.attributes for e in catalog.find_entities("record_error")}
    mp_repeats = sum(name.startswith("mp:") for name in repeated)
    assert counts["train"] + counts["test"] == 200 - mp_repeats
    assert counts["candidate_pool"] == 200 - (repeats - mp_repeats)
    for target in ("band_gap", "formation_energy_per_atom"):
        m = metrics["targets"][target]
        assert m["n_test"] == counts["test"] - counts["feature_failures"]
        assert m["mae"] < m["dummy_mae"]

    ranking = pd.read_csv(out / "ranking.csv")
    assert set(ranking["id"].str.split(":").str[0]) == {"oqmd"}
    oqmd_ids = {f"oqmd:oqmd-{row['entry_id']}" for row in endpoints["oqmd_rows"]}
    left_out = {i for i in errors if i.startswith("oqmd:")}
    assert set(ranking["id"]) | left_out | (repeated & oqmd_ids) == oqmd_ids
    # OQMD's own labels are shown beside the predictions and check the screen.
    assert ranking["reported_band_gap"].notna().sum() > 0.9 * len(ranking)
    assert metrics["screening"]["n_true_hits"] >= 0 and not metrics["screening"]["retrospective"]

    # The hull's phases come from MP through mp-api, for the candidates' chemical systems.
    requests = [r for r in endpoints["mp_server"].summary_requests() if "chemsys" in r.params]
    assert requests and all("formation_energy_per_atom" in r.params["_fields"] for r in requests)
    asked = {system for r in requests for system in r.params["chemsys"].split(",")}
    assert {"-".join(sorted(s.split("-"))) for s in ranking["formula"].map(_system)} <= asked
    assert ranking["pred_energy_above_hull"].notna().all()
    assert (ranking["competing_origins"].str.contains("elements|mp:", regex=True)).all()
    with Catalog(settings.catalog_url) as catalog:
        names = {e.name for e in catalog.find_entities("source_snapshot")}
    assert "mp-references" in names

    report = (out / "report.html").read_text()
    assert "2023.11.1" in report  # MP's database version from its heartbeat
    assert f"optimade {optimade.__api_version__}" in report  # the API version from /info

    oqmd_candidate = ranking["id"].iloc[0]
    with Catalog(settings.catalog_url) as catalog:
        found = lineage(catalog, ArtifactStore(settings.artifact_dir), oqmd_candidate)
        record = next(e for e in found.entities if e.kind == "structure_record")
        assert record.name == oqmd_candidate
        (derived,) = catalog.edges(relation="wasDerivedFrom", subject_id=record.id)
        snapshot = next(e for e in found.entities if e.id == derived.object_id)
        assert snapshot.name == "oqmd" and snapshot.attributes["licence"] == "CC-BY-4.0"
        assert snapshot.attributes["location"].startswith(endpoints["optimade"])
        assert len(linked) == repeats

    # The key never reaches the catalog, the artifacts, the outputs or the console.
    stored = [p for p in (tmp_path / "home").rglob("*") if p.is_file()]
    stored += [p for p in out.rglob("*") if p.is_file()]
    for path in stored:
        assert API_KEY.encode() not in path.read_bytes(), path
    assert API_KEY not in printed.out + printed.err
