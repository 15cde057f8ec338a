"""End to end: learn from labelled perovskites, screen unlabelled decorations.

A campaign with two pools — 241 real CMR perovskites to learn from (one unreadable, one
unfeaturizable) and decorated cubic perovskites nobody has labelled — runs through the
Python API on a real Prefect server and a two-worker Dask cluster. Every decoration must
be ranked or reported with its reason; validation metrics come from the labelled
held-out split only; hull distances follow from the predicted heats of formation; the
shortlist's structures are handed over as CIF, POSCAR and JSON lines.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

import matscreen
from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.lineage import lineage
from matscreen.flows.settings import Settings
from matscreen.tasks.sources.prototypes import iter_candidates
from matscreen.tasks.spec import PrototypeSourceSpec

A_SITES = ["Sr", "Ba", "Ca", "La", "K", "Na", "Y"]
B_SITES = ["Ti", "Zr", "Hf", "Nb", "Ta", "Al", "Ga", "Sn", "Sc"]

SCREEN_SOURCE = f"""
  - name: decorations
    kind: prototypes
    pool: screen
    prototype: perovskite_ABX3
    sites: {{A: {A_SITES}, B: {B_SITES}, X: [O3, O2N]}}
"""

STABILITY = """
stability:
  formation_energy: heat_of_formation
  per: cell
"""


@pytest.fixture()
def screen_spec(subset_spec: Path, tmp_path: Path) -> Path:
    text = subset_spec.read_text().replace("name: perovskite-subset", "name: perovskite-screen")
    text = text.replace("split:", SCREEN_SOURCE.lstrip("\n") + "split:", 1)
    text = text.replace(
        "  - {property: heat_of_formation, max: 0.21, unit: eV}",
        "  - {property: energy_above_hull, max: 0.05, unit: eV/atom}",
    )
    path = tmp_path / "screen.yaml"
    path.write_text(text + STABILITY)
    return path


@pytest.mark.slow
def test_screen_ranks_every_candidate(prefect_server, settings, screen_spec, tmp_path) -> None:
    out = tmp_path / "screen"
    result = matscreen.run_campaign(screen_spec, output_dir=out)
    metrics, ranking, shortlist = result.metrics, result.ranking, result.shortlist
    counts = metrics["counts"]

    # Every decoration is ranked, known from training, or a failure with its reason.
    decorations = list(
        iter_candidates(
            PrototypeSourceSpec(
                kind="prototypes",
                name="decorations",
                prototype="perovskite_ABX3",
                sites={"A": A_SITES, "B": B_SITES, "X": ["O3", "O2N"]},
                licence="CC0-1.0",
                citation=["x"],
            )
        )
    )
    expected_ids = {f"decorations:{c.source_id}" for c in decorations}
    ranked = set(ranking["id"])
    assert all(ranking["source"] == "decorations")
    with Catalog(settings.catalog_url) as catalog:
        errors = {e.name: e.attributes for e in catalog.find_entities("record_error")}
    left_out = {i for i in errors if i.startswith("decorations:")}
    duplicates = _duplicate_ids(settings) & expected_ids
    assert ranked | left_out | duplicates == expected_ids
    assert not ranked & (left_out | duplicates) and not left_out & duplicates
    reasons = {errors[i]["stage"] for i in left_out}
    assert reasons <= {"pool", "featurize", "hull"}
    known = [i for i in left_out if errors[i]["stage"] == "pool"]
    assert all("already in the training pool" in errors[i]["message"] for i in known)
    assert counts["candidates"] == len(ranking)
    assert counts["candidate_pool"] == len(expected_ids) - len(duplicates)
    report = (out / "report.html").read_text()
    assert all(i in report for i in sorted(left_out)[:5])

    # Validation metrics come from the labelled held-out split only.
    validation = result.validation
    assert validation is not None and set(validation["source"]) == {"cmr_perovskites"}
    for target in ("heat_of_formation", "band_gap"):
        m = metrics["targets"][target]
        assert m["n_test"] == len(validation)
        reported = validation[f"reported_{target}"].to_numpy(dtype=float)
        predicted = validation[f"pred_{target}"].to_numpy(dtype=float)
        assert m["mae"] == pytest.approx(np.mean(np.abs(reported - predicted)), abs=1e-4)
    assert metrics["screening"]["retrospective"] is False
    assert metrics["screening"]["n_candidates"] == len(ranking)

    # The hull distance is the predicted heat per atom above the hull of the known phases.
    per_atom = ranking["pred_heat_of_formation"] / 5
    assert np.allclose(
        ranking["pred_energy_above_hull"], per_atom - ranking["hull_energy_per_atom"], atol=1e-6
    )
    assert (ranking["lower_energy_above_hull"] <= ranking["pred_energy_above_hull"] + 1e-9).all()
    assert ranking["competing_phases"].notna().all()
    # Ranked by the probability of meeting every criterion.
    assert (np.diff(ranking["p_success"]) <= 1e-9).all()

    # The DFT hand-off: a CIF, a POSCAR and one JSON line per shortlisted candidate.
    folder = out / "structures"
    lines = (folder / "shortlist_structures.jsonl").read_text().splitlines()
    assert len(lines) == len(shortlist) == 10
    first = json.loads(lines[0])
    assert first["candidate_id"] == shortlist.loc[0, "id"]
    decoration = next(
        c for c in decorations if f"decorations:{c.source_id}" == first["candidate_id"]
    )
    assert sorted(str(e) for e in Structure.from_dict(first["structure"]).species) == sorted(
        decoration.site_species()
    )
    assert len(list(folder.glob("*.cif"))) == len(list(folder.glob("*.vasp"))) == 10
    crate = json.loads((out / "ro-crate-metadata.json").read_text())
    listed = {e["@id"] for e in crate["@graph"]}
    assert all(f"structures/{p.name}" in listed for p in folder.glob("*.cif"))

    # Any candidate traces back to its decoration.
    with Catalog(settings.catalog_url) as catalog:
        chain = lineage(catalog, ArtifactStore(settings.artifact_dir), first["candidate_id"])
    kinds = {e.kind for e in chain.entities}
    assert {"ranking", "prediction_set", "model", "source_snapshot"} <= kinds
    snapshots = [e for e in chain.entities if e.kind == "source_snapshot"]
    assert "decorations" in {s.name for s in snapshots}


def _duplicate_ids(settings: Settings) -> set[str]:
    """Records the catalog links to an earlier record of the same structure."""
    with Catalog(settings.catalog_url) as catalog:
        edges = catalog.edges(relation="alternateOf")
        return {e.name for e in catalog.get_entities([edge.subject_id for edge in edges])}


def _with_chunks(spec: Path, size: int, folder: Path) -> Path:
    path = folder / f"chunks_{size}.yaml"
    path.write_text(spec.read_text() + f"screen:\n  chunk_size: {size}\n")
    return path


def _chunk_steps(catalog: Catalog, run_id: str, name: str) -> list:
    return [a for a in catalog.activities(parent_id=run_id) if a.name == name]


@pytest.mark.slow
def test_chunks_of_any_size_give_the_same_screen(
    prefect_server, settings, screen_spec, tmp_path, monkeypatch
) -> None:
    # The candidates streamed 17 at a time (deduplication, known-candidate matching,
    # features, predictions, hull and exclusions per chunk) rank exactly as in one chunk.
    from matscreen.flows.resume import ScreenResume

    whole = matscreen.run_campaign(screen_spec, output_dir=tmp_path / "whole")
    # Every chunk is kept once finished, the last one (placed against the hull after the
    # read has ended) too: seen here with the removal at the run's end left out.
    monkeypatch.setattr(ScreenResume, "forget", lambda self: None)
    chunked = matscreen.run_campaign(
        _with_chunks(screen_spec, 17, tmp_path), output_dir=tmp_path / "chunked"
    )
    kept = list(settings.screen_state_dir.glob("*/*/*.json"))
    columns = [
        c
        for c in whole.ranking.columns
        if c.startswith(("pred_", "lower_", "upper_", "p_")) or c in ("id", "rank", "formula")
    ]
    assert len(columns) > 8
    pd.testing.assert_frame_equal(whole.ranking[columns], chunked.ranking[columns])
    assert whole.metrics["counts"] == chunked.metrics["counts"]
    assert list(whole.shortlist["id"]) == list(chunked.shortlist["id"])

    read = whole.metrics["counts"]["records"] - 240  # the decorations (240 CMR rows)
    with Catalog(settings.catalog_url) as catalog:
        for result, size in ((whole, read), (chunked, 17)):
            steps = _chunk_steps(catalog, result.run_id, "ingest-chunk")
            assert len(steps) == -(-read // size)
            if result is chunked:
                assert len(kept) == len(steps)
            assert [s.parameters["chunk"] for s in steps] == list(range(len(steps)))
        errors = catalog.run_entities(chunked.run_id, kinds=["record_error"])
        assert {e.name for e in errors} == {
            e.name for e in catalog.run_entities(whole.run_id, kinds=["record_error"])
        }
        # A chunked candidate's lineage goes through its own chunk: the two prediction sets
        # of its chunk and its chunk's feature table (with the training pool's), not the
        # other chunks', nor the whole run's (the two runs rank alike, so they may store one
        # ranking, derived from both runs' prediction sets).
        last = chunked.ranking["id"].iloc[-1]
        chain = lineage(catalog, ArtifactStore(settings.artifact_dir), last, chunked.run_id)
        kinds = [e.kind for e in chain.entities]
        assert kinds.count("prediction_set") == 2
        assert kinds.count("feature_table") == 2
        assert kinds.count("structure_record") == 1 and chain.record.name == last
        assert chain.row["rank"] == chunked.ranking["rank"].iloc[-1]


@pytest.mark.slow
def test_a_killed_screen_resumes_from_its_finished_chunks(
    prefect_server, settings, screen_spec, tmp_path
) -> None:
    import os
    import subprocess
    import sys
    import time

    import psutil

    spec = _with_chunks(screen_spec, 20, tmp_path)
    env = {**os.environ, "MATSCREEN_HOME": str(settings.home), "MATSCREEN_DASK_WORKERS": "2"}
    child = subprocess.Popen(
        [str(Path(sys.executable).parent / "matscreen"), "campaign", "run", str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    kept: list[Path] = []
    try:
        deadline = time.monotonic() + 600
        # Stop it once two chunks are finished (kept: they stay until the run's very end).
        while len(kept) < 2:
            assert child.poll() is None, "the campaign ended before it was killed"
            assert time.monotonic() < deadline, "no chunk was screened"
            time.sleep(0.5)
            kept = list(settings.screen_state_dir.glob("*/*/*.json"))
    finally:
        try:
            tree = [child, *psutil.Process(child.pid).children(recursive=True)]
        except psutil.NoSuchProcess:  # it ended by itself (the assertion above says so)
            tree = []
        for process in tree:
            process.kill()
        psutil.wait_procs(tree, timeout=30)
    kept = list(settings.screen_state_dir.glob("*/*/*.json"))
    unfinished = len(_featurize_steps(settings)) - 1 - len(kept)  # 1: the training pool
    applied = _applied_predictions(settings)
    # One kept chunk is damaged on disk: it fails its check and is screened again.
    kept[0].with_suffix(".parquet").write_bytes(b"not parquet")
    # The records and failed rows of the other kept chunks (the last one may be short).
    taken = 0
    for document in kept[1:]:
        chunk_counts = json.loads(document.read_text().split("\n", 1)[1])["counts"]
        taken += chunk_counts["records"] + chunk_counts["ingest_failures"]

    resumed = matscreen.run_campaign(spec, output_dir=tmp_path / "resumed")
    with Catalog(settings.catalog_url) as catalog:
        steps = _featurize_steps(settings, resumed.run_id)
        ingests = _chunk_steps(catalog, resumed.run_id, "ingest-chunk")
    counts = resumed.metrics["counts"]
    assert counts["candidates"] == len(resumed.ranking) > 0
    # The chunks the killed run finished are taken whole: not recorded, featurized,
    # predicted or placed again.
    chunks = -(-(counts["records"] - 240) // 20)
    assert counts["records_resumed"] == taken > 0
    assert len(ingests) == chunks - len(kept) + 1 == len(steps) - 1
    # The chunks it featurized but did not finish (and the damaged one) come from the
    # store: no batch is computed.
    from_store = [s for s in steps[1:] if s.parameters["batches"] == 0]
    assert len(from_store) >= unfinished + 1
    assert all(s.parameters["structures_from_store"] > 0 for s in from_store)
    # The chunks it predicted with every model but that are not taken (the damaged one, and
    # one under way) are not predicted again: their prediction sets are read back. The run
    # that resumed used every prediction set.
    assert counts["predictions_reused"] > 0
    with Catalog(settings.catalog_url) as catalog:
        used = {e.id for e in catalog.run_entities(resumed.run_id, ["prediction_set"])}
    assert {e.id for e in applied} <= used
    # A finished run keeps no chunk.
    assert not list(settings.screen_state_dir.glob("*/*/*"))
    # A run after a finished one predicts again only the chunk whose stored predictions
    # are corrupt (and stores them anew), and ranks the same.
    sets = _applied_predictions(settings)
    target = sets[0].attributes["target"]
    rows = sum(e.attributes["n_rows"] for e in sets if e.attributes["target"] == target)
    artifacts = ArtifactStore(settings.artifact_dir)
    victim = sets[0].attributes
    artifacts.path_for(victim["artifact_sha256"]).write_bytes(b"not parquet")
    again = matscreen.run_campaign(spec, output_dir=tmp_path / "again")
    assert again.metrics["counts"]["predictions_reused"] == rows - victim["n_rows"]
    assert artifacts.problem(victim["artifact_sha256"]) is None
    pd.testing.assert_frame_equal(
        again.ranking.reset_index(drop=True), resumed.ranking.reset_index(drop=True)
    )
    # Taken whole or screened again, every chunk counts the same.
    reuse = {"predictions_reused", "records_resumed"}
    assert again.metrics["counts"]["records_resumed"] == 0
    assert {k: v for k, v in counts.items() if k not in reuse} == {
        k: v for k, v in again.metrics["counts"].items() if k not in reuse
    }


def _applied_predictions(settings: Settings) -> list:
    """The prediction sets of candidates recorded so far (with their scalars)."""
    with Catalog(settings.catalog_url) as catalog:
        sets = catalog.find_entities("prediction_set")
    return [e for e in sets if "scalars" in e.attributes]


def _featurize_steps(settings: Settings, run_id: str | None = None) -> list:
    """The featurize steps of a run (of every run if None), in the order they started."""
    with Catalog(settings.catalog_url) as catalog:
        steps = [a for a in catalog.activities(kind="step") if a.name == "featurize"]
    if run_id is not None:
        steps = [a for a in steps if a.parent_id == run_id]
    return sorted(steps, key=lambda a: a.started_at)


@pytest.mark.slow
def test_a_real_cluster_ranks_as_the_local_cluster(
    prefect_server, settings, screen_spec, postgres_url, tmp_path, monkeypatch
) -> None:
    # A `dask scheduler` and two `dask worker` processes with matscreen's preload, the
    # Prefect server the workers report to, and a PostgreSQL catalog, all on loopback:
    # the campaign runs through MATSCREEN_DASK_ADDRESS and ranks as on a LocalCluster.
    import os
    import subprocess
    import sys
    import time

    from pg_server import fresh_database
    from prefect.settings import PREFECT_API_URL

    local = matscreen.run_campaign(screen_spec, output_dir=tmp_path / "local")

    catalog_url = fresh_database(postgres_url)
    bin_dir = Path(sys.executable).parent
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    logs = open(tmp_path / "cluster.log", "w")  # noqa: SIM115 - closed below
    processes = [
        subprocess.Popen(
            [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
            env=env, stdout=logs, stderr=logs,
        )
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, "the dask scheduler did not start"
            time.sleep(0.2)
        for _ in range(2):
            processes.append(
                subprocess.Popen(
                    [str(bin_dir / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                     "--nthreads", "1", "--host", "127.0.0.1", "--dashboard-address", ":0",
                     "--preload", "matscreen.flows.dask_preload"],
                    env=env, stdout=logs, stderr=logs,
                )
            )  # fmt: skip
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=120)
        monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "cluster-home"))
        monkeypatch.setenv("MATSCREEN_DASK_ADDRESS", address)
        monkeypatch.setenv("MATSCREEN_CATALOG_URL", catalog_url)
        remote = matscreen.run_campaign(screen_spec, output_dir=tmp_path / "remote")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        logs.close()

    columns = ["id", "rank", "pred_heat_of_formation", "pred_band_gap", "p_success"]
    pd.testing.assert_frame_equal(local.ranking[columns], remote.ranking[columns])
    assert local.metrics["counts"] == remote.metrics["counts"]
    with Catalog(catalog_url) as catalog:
        steps = catalog.activities(parent_id=remote.run_id)
        runs = steps + [a for s in steps for a in catalog.activities(parent_id=s.id)]
    # Featurization batches, fits and predictions ran in the two worker processes.
    pids = {a.parameters["host_pid"] for a in runs if a.kind == "task_run"}
    assert len(pids - {os.getpid()}) >= 2
    assert any(a.name == "featurize_packed" for a in runs)
