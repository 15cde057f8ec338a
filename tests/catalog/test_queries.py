"""Provenance queries: impact, runs, models, candidates, run diffs and show.

A small catalog is written through the real recorder (on SQLite and on PostgreSQL) with a
known history: a Materials-Project-like source read at two releases (one record changed,
one added) and a lab file read by every run. Three runs: the same campaign at release 1
and at release 2, and a second campaign at release 2. The slow tests ask the same questions
of two real campaign runs and check the answers against their output files.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from matscreen.catalog import ArtifactStore, Catalog, schema
from matscreen.catalog.lineage import lineage, ranking_row
from matscreen.catalog.nodes import Entity
from matscreen.catalog.queries import (
    candidate_rows,
    diff_runs,
    find_candidates,
    find_models,
    find_runs,
    impact,
    ranking_table,
    resolve,
    show,
    summarize,
)
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.tasks.errors import ArtifactError, NotFoundError, RankingError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.rank import candidate_frame, rank_candidates
from matscreen.tasks.rank.criteria import meeting_criteria
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.sources.records import (
    IngestResult,
    RecordFailure,
    SourceSnapshot,
    StructureRecord,
)
from matscreen.tasks.spec import CriterionSpec, SplitSpec
from matscreen.tasks.split import choose_split
from matscreen.tasks.tables import frame_to_parquet

RUN_IDS = [f"0badcafe-0000-4000-8000-00000000000{i}" for i in (1, 2, 3)]
TARGETS = ("heat_of_formation", "band_gap")
RUN_LEVEL = ("data_split", "feature_table", "training_set", "model", "prediction_set")


# -- a small catalog with a known history ------------------------------------------------
def _record(source: str, number: int, version: int = 0, twin: str | None = None):
    gap = round(0.3 * number + version, 3)
    return StructureRecord(
        source=source,
        source_id=str(number),
        row=number,
        formula=f"Sr{number}TiO3",
        structure={}
        if twin
        else {
            "lattice": {"matrix": [[3.9 + version, 0, 0], [0, 3.9, 0], [0, 0, 3.9]]},
            "sites": [
                {"species": [{"element": "Sr", "occu": 1}], "abc": [0, 0, 0]},
                {"species": [{"element": "Ti", "occu": 1}], "abc": [0.5, 0.5, 0.5]},
            ],
        },
        properties={"band_gap": gap, "heat_of_formation": round(0.05 * number - 0.2, 3)},
        units={"band_gap": "eV", "heat_of_formation": "eV"},
        duplicate_of=twin,
    )


def _snapshot(source: str, kind: str, sha: str, version: str, n_rows: int) -> SourceSnapshot:
    return SourceSnapshot(
        source=source,
        kind=kind,
        location=f"/data/{source}-{version or 'file'}",
        sha256=sha,
        size_bytes=100 * n_rows,
        n_rows=n_rows,
        retrieved_at=utc_now(),
        licence="CC-BY-4.0",
        citation=("A. Author, J. Test 1 (2025)",),
        database_version=version,
    )


def release(number: int) -> IngestResult:
    """The main source at release 1 (records 1-10, row 11 unreadable) or release 2 (record
    3 changed, record 12 added)."""
    if number == 1:
        records = [_record("mp", n) for n in range(1, 11)]
        failures = [RecordFailure("mp", "11", 11, "ingest", "release 1 row 11: no structure")]
    else:
        records = [_record("mp", n, 1 if n == 3 else 0) for n in (*range(1, 11), 12)]
        failures = []
    snapshot = _snapshot("mp", "mp", f"{number}" * 64, f"2025.0{number}", 11)
    return IngestResult(snapshot, records, failures)


def lab_file() -> IngestResult:
    """Eight lab records; the fifth repeats ``mp:5``."""
    records = [_record("lab", n, twin="mp:5" if n == 5 else None) for n in range(1, 9)]
    return IngestResult(_snapshot("lab", "csv_cif", "a" * 64, "", 8), records, [])


def _run_info(name: str) -> RunInfo:
    now = utc_now()
    return RunInfo(name, now, now, "test-host", 1, str(uuid.uuid4()))


def record_campaign(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str,
    reads: list[IngestResult],
    campaign: int,
    noise: float,
) -> dict[str, Any]:
    """Write one run through the recorder; return what it stored.

    Predictions are the true values plus ``noise`` times -1, 0 or 1, plus a shift of the
    run's own, so that no two runs arrive at the same predictions.
    """
    recorder = CampaignRecorder(
        catalog, artifacts, run_id, "screen-candidates", {}, {"matscreen": "0"}, None, "t", "h"
    )
    criteria = [
        CriterionSpec(property="heat_of_formation", max=0.1 * campaign, unit="eV"),
        CriterionSpec(property="band_gap", min=0.5, max=2.5 + campaign, unit="eV"),
    ]
    stored: dict[str, Any] = {"run_id": run_id}
    with recorder.running():
        spec = {"name": f"campaign-{campaign}", "criteria": [c.model_dump() for c in criteria]}
        stored["spec"] = recorder.spec(spec, f"{campaign}" * 64, _run_info("load_spec"))
        record_ids: dict[str, str] = {}
        stored["snapshots"] = []
        for read in reads:
            recorded = recorder.ingest(read, _run_info("read_source"), record_ids)
            stored["snapshots"].append(recorded.snapshot_id)
            record_ids.update(recorded.record_ids)
        stored["record_ids"] = record_ids
        records = [r for read in reads for r in read.records if r.duplicate_of is None]
        split = choose_split(sorted(r.id for r in records), SplitSpec(test_fraction=0.4, seed=3))
        stored["split"] = recorder.split(split, _run_info("choose_split"), stored["snapshots"])
        frame = pd.DataFrame(
            {"gap_feature": [r.properties["band_gap"] for r in records]},
            index=pd.Index([r.id for r in records], name="id"),
        )
        features = SimpleNamespace(frame=frame.sort_index(), failures={})
        stored["featurized"] = len(frame)
        stored["features"] = recorder.features(
            features, [_run_info("featurize_packed")], {"preset": "fast"}, [], record_ids
        )
        labels = {r.id: r.properties for r in records}
        test = split.test_ids
        predictions, stored["models"], stored["predictions"] = {}, {}, {}
        for target in TARGETS:
            truth = [labels[i][target] for i in test]
            shift = 0.001 * RUN_IDS.index(run_id)
            predictions[target] = [t + noise * (k % 3 - 1) + shift for k, t in enumerate(truth)]
            trained = SimpleNamespace(
                target=target,
                algorithm="xgboost",
                params={"noise": noise},
                feature_labels=["gap_feature"],
                clip_min=None,
                versions={},
                train_ids=split.train_ids,
                train_label_mean=0.0,
                model_json=f"{target} {run_id}".encode(),
            )
            held = SimpleNamespace(
                target=target, ids=test, y_true=truth, y_pred=predictions[target], baseline=0.0
            )
            model_id, prediction_id = recorder.model(
                trained, held, {"mae": noise}, _run_info("fit"), stored["split"], stored["features"]
            )
            stored["models"][target], stored["predictions"][target] = model_id, prediction_id
        formulas = {r.id: r.formula for r in records}
        ranked = rank_candidates(
            candidate_frame(test, [formulas[i] for i in test], predictions), criteria
        )
        stored["frame"] = ranked.set_index("id")
        stored["ranking"] = recorder.ranking(
            ranked,
            _run_info("rank_candidates"),
            [c.model_dump() for c in criteria],
            list(stored["predictions"].values()),
        )
        stored["report"] = recorder.report(
            {}, _run_info("write_outputs"), stored["ranking"], list(stored["models"].values())
        )
    return stored


@dataclass(frozen=True)
class Small:
    catalog: Catalog
    artifacts: ArtifactStore
    runs: list[dict[str, Any]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def small(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Three runs in a fresh catalog on SQLite, and on a real PostgreSQL server (whose tables
    are dropped afterwards)."""
    folder = tmp_path_factory.mktemp("queries")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with Catalog(url) as catalog:
        artifacts = ArtifactStore(folder / "artifacts")
        runs = [
            record_campaign(catalog, artifacts, RUN_IDS[0], [release(1), lab_file()], 1, 0.1),
            record_campaign(catalog, artifacts, RUN_IDS[1], [release(2), lab_file()], 1, 0.1),
            record_campaign(catalog, artifacts, RUN_IDS[2], [release(2), lab_file()], 2, 0.3),
        ]
        yield Small(catalog, artifacts, runs)
        if request.param == "postgresql":
            schema.metadata.drop_all(catalog.engine)


def _ids(nodes) -> set[str]:
    return {node.id for node in nodes}


# -- impact --------------------------------------------------------------------------------
def test_a_release_reaches_only_the_runs_that_read_it(small: Small) -> None:
    catalog, first = small.catalog, small.runs[0]
    found = impact(catalog, first["snapshots"][0])
    # Records 1, 2 and 4-10 are the same entities in both releases and run 2 trained on
    # them, but run 2 read release 2: release 1 reaches run 1 alone.
    assert [r.id for r in found.runs] == [RUN_IDS[0]]
    assert [e.id for e in found.rankings] == [first["ranking"]]
    assert [e.id for e in found.reports] == [first["report"]]
    expected = _ids(catalog.run_entities(RUN_IDS[0], RUN_LEVEL)) | {
        first["ranking"],
        first["report"],
    }
    assert _ids(found.entities) == expected
    assert found.per_record == {"structure_record": 10, "record_error": 1}
    assert found.runs_of[first["ranking"]] == [RUN_IDS[0]]
    # From the source towards the result.
    kinds = [e.kind for e in found.entities]
    assert kinds.index("data_split") < kinds.index("model") < kinds.index("ranking")


def test_a_snapshot_read_by_several_runs_reaches_each(small: Small) -> None:
    second, third = small.runs[1], small.runs[2]
    assert second["snapshots"] == third["snapshots"]  # release 2 and the file, read twice
    found = impact(small.catalog, second["snapshots"][0])
    assert [r.id for r in found.runs] == RUN_IDS[1:]
    assert _ids(found.rankings) == {second["ranking"], third["ranking"]}
    assert found.per_record == {"structure_record": 11}
    # The file is read by all three runs; its twin of mp:5 is counted as its own record.
    found = impact(small.catalog, second["snapshots"][1])
    assert [r.id for r in found.runs] == RUN_IDS
    assert _ids(found.rankings) == {run["ranking"] for run in small.runs}
    assert found.per_record == {"structure_record": 8}
    assert {r.spec for r in found.runs} == {"campaign-1", "campaign-2"}


def test_a_model_reaches_its_predictions_ranking_and_report(small: Small) -> None:
    first = small.runs[0]
    found = impact(small.catalog, first["models"]["band_gap"])
    assert _ids(found.entities) == {
        first["predictions"]["band_gap"],
        first["ranking"],
        first["report"],
    }
    assert found.per_record == {}
    assert [r.id for r in found.runs] == [RUN_IDS[0]]


def test_a_record_reaches_every_run_that_featurized_it(small: Small) -> None:
    catalog, runs = small.catalog, small.runs
    shared = runs[0]["record_ids"]["mp:1"]
    assert shared == runs[1]["record_ids"]["mp:1"]
    assert {r.id for r in impact(catalog, shared).runs} == set(RUN_IDS)
    # mp:3 changed in release 2: its first version is in run 1's data alone.
    first_version = runs[0]["record_ids"]["mp:3"]
    assert first_version != runs[1]["record_ids"]["mp:3"]
    found = impact(catalog, first_version)
    assert [r.id for r in found.runs] == [RUN_IDS[0]]
    # Everything run 1 built from its feature table on; the split comes from snapshots.
    kinds = ["feature_table", "training_set", "model", "prediction_set", "ranking", "report"]
    assert _ids(found.entities) == _ids(small.catalog.run_entities(RUN_IDS[0], kinds))


def test_impact_names_what_it_cannot_find(small: Small) -> None:
    with pytest.raises(NotFoundError, match="'nothing:here'"):
        impact(small.catalog, "nothing:here")
    with pytest.raises(NotFoundError, match="is the flow_run screen-candidates, not an entity"):
        impact(small.catalog, RUN_IDS[0])


# -- finding runs and models -------------------------------------------------------------
def test_find_runs_by_release_snapshot_model_spec(small: Small) -> None:
    catalog, runs = small.catalog, small.runs

    def ids(found) -> list[str]:
        return [r.id for r in found]

    assert ids(find_runs(catalog)) == RUN_IDS
    assert ids(find_runs(catalog, database_version="2025.02")) == RUN_IDS[1:]
    assert ids(find_runs(catalog, source="mp", database_version="2025.01")) == RUN_IDS[:1]
    assert ids(find_runs(catalog, snapshot_sha256="a" * 64)) == RUN_IDS
    assert ids(find_runs(catalog, snapshot_sha256="1" * 12)) == RUN_IDS[:1]
    assert ids(find_runs(catalog, source="csv_cif", spec="campaign-2")) == RUN_IDS[2:]
    model = catalog.get_entity(runs[2]["models"]["heat_of_formation"])
    assert ids(find_runs(catalog, model_sha256=model.attributes["artifact_sha256"])) == [RUN_IDS[2]]
    assert ids(find_runs(catalog, model_sha256=model.id[:10], database_version="2025.01")) == []
    assert ids(find_runs(catalog, database_version="1999.01")) == []
    assert {r.status for r in find_runs(catalog)} == {"completed"}
    with pytest.raises(NotFoundError, match="'aaaa' is too short"):
        find_runs(catalog, snapshot_sha256="aaaa")


def test_find_models_by_source_and_target(small: Small) -> None:
    catalog, runs = small.catalog, small.runs
    gap_models = find_models(catalog, target="band_gap")
    assert [m.id for m in gap_models] == [run["models"]["band_gap"] for run in runs]
    assert [m.runs for m in gap_models] == [[run_id] for run_id in RUN_IDS]
    assert all(m.sources == ["lab", "mp"] for m in gap_models)
    assert gap_models[2].metrics == {"mae": 0.3}
    assert len(find_models(catalog, source="lab")) == 6
    assert find_models(catalog, source="aflow") == []


# -- candidates and diffs ----------------------------------------------------------------
def test_find_candidates_by_own_and_given_criteria(small: Small) -> None:
    catalog, artifacts, run = small.catalog, small.artifacts, small.runs[1]
    frame = run["frame"]
    own = find_candidates(catalog, artifacts, run_id=RUN_IDS[1])
    assert [c.id for c in own] == list(frame.index[frame["meets_criteria"]])
    wanted = frame[(frame["pred_band_gap"] >= 1.0) & (frame["pred_band_gap"] <= 2.0)]
    ranking_id, table = ranking_table(catalog, artifacts, run_id=RUN_IDS[1])
    assert ranking_id == run["ranking"]
    given = candidate_rows(
        meeting_criteria(table, [{"property": "band_gap", "min": 1.0, "max": 2.0}], ranking_id)
    )
    assert [c.id for c in given] == list(wanted.sort_values("rank").index)
    assert given, "the chosen range holds some candidates"
    first = given[0]
    assert first.rank == frame.loc[first.id, "rank"]
    assert first.predictions["band_gap"] == pytest.approx(frame.loc[first.id, "pred_band_gap"])
    gap = frame.loc[first.id, "pred_band_gap"]
    assert first.margin == pytest.approx(min(gap - 1.0, 2.0 - gap))
    # No run given: the latest ranking, which is run 3's.
    latest = find_candidates(catalog, artifacts, every=True)
    assert [c.id for c in latest] == list(small.runs[2]["frame"].index)
    with pytest.raises(RankingError, match=f"ranking {run['ranking']} has no predictions"):
        meeting_criteria(table, [{"property": "density", "min": 1}], ranking_id)
    with pytest.raises(NotFoundError, match="'0badcafe-nope'"):
        find_candidates(catalog, artifacts, run_id="0badcafe-nope")


def test_diff_runs_of_two_releases(small: Small) -> None:
    a, b = small.runs[0], small.runs[1]
    diff = diff_runs(small.catalog, small.artifacts, RUN_IDS[0], RUN_IDS[1])
    fa, fb = a["frame"], b["frame"]
    assert [c.id for c in diff.new] == sorted(
        set(fb.index) - set(fa.index), key=lambda i: fb.loc[i, "rank"]
    )
    assert [c.id for c in diff.dropped] == sorted(
        set(fa.index) - set(fb.index), key=lambda i: fa.loc[i, "rank"]
    )
    both = set(fa.index) & set(fb.index)
    moves = {i: fb.loc[i, "rank"] - fa.loc[i, "rank"] for i in both}
    assert {m.id: m.delta for m in diff.moves} == {i: d for i, d in moves.items() if d}
    assert diff.unchanged == sum(1 for d in moves.values() if not d)
    assert [abs(m.delta) for m in diff.moves] == sorted(
        (abs(m.delta) for m in diff.moves), reverse=True
    )
    hits_a, hits_b = fa["meets_criteria"], fb["meets_criteria"]
    assert set(diff.new_hits) == {i for i in both if hits_b[i] and not hits_a[i]}
    assert set(diff.dropped_hits) == {i for i in both if hits_a[i] and not hits_b[i]}
    # The same campaign on a new release: the spec is the same, the data and models not.
    changed = {change.kind: change for change in diff.inputs}
    assert list(changed) == ["source_snapshot", "data_split", "feature_table", "model"]
    assert [n.id for n in changed["source_snapshot"].only_a] == [a["snapshots"][0]]
    assert [n.id for n in changed["source_snapshot"].only_b] == [b["snapshots"][0]]
    assert _ids(changed["model"].only_b) == set(b["models"].values())
    # Another campaign on the same data: same candidates, other spec and models.
    other = diff_runs(small.catalog, small.artifacts, RUN_IDS[1], RUN_IDS[2])
    assert other.new == [] and other.dropped == []
    assert [change.kind for change in other.inputs] == ["campaign_spec", "model"]
    with pytest.raises(NotFoundError, match="not a run"):
        diff_runs(small.catalog, small.artifacts, a["ranking"], RUN_IDS[1])


# -- show ----------------------------------------------------------------------------------
def test_show_an_entity_by_prefix(small: Small) -> None:
    run = small.runs[0]
    shown = show(small.catalog, run["ranking"][:10])
    assert shown.node.id == run["ranking"] and shown.node.kind == "ranking"
    assert shown.attributes["n_candidates"] == len(run["frame"])
    assert [r.id for r in shown.runs] == [RUN_IDS[0]]
    assert [n.name for n in shown.relations["generated by"].nodes] == ["rank_candidates"]
    # The ranking reaches its records through the prediction sets and their feature table.
    derived = shown.relations["derived from"]
    assert derived.totals == {"campaign_spec": 1, "prediction_set": 2}
    assert _ids(shown.relations["derived into"].nodes) == {run["report"]}
    limited = show(small.catalog, run["ranking"], limit=1)
    assert limited.relations["derived from"].omitted == {"prediction_set": 1}
    table = show(small.catalog, run["features"], limit=1).relations["derived from"]
    assert table.totals == {"structure_record": run["featurized"]}
    assert table.omitted == {"structure_record": run["featurized"] - 1}


def test_show_a_record_by_name_and_its_other_versions(small: Small) -> None:
    runs = small.runs
    shown = show(small.catalog, "mp:3")
    assert shown.node.id == runs[1]["record_ids"]["mp:3"]  # the latest version
    assert _ids(shown.relations["other versions"].nodes) == {runs[0]["record_ids"]["mp:3"]}
    assert shown.attributes["structure"] == "<structure: 2 sites, SrTi>"
    twin = show(small.catalog, "lab:5")
    assert _ids(twin.relations["alternates"].nodes) == {runs[0]["record_ids"]["mp:5"]}
    assert twin.attributes["duplicate_of"] == "mp:5"


def test_show_an_activity(small: Small) -> None:
    shown = show(small.catalog, RUN_IDS[1])
    assert shown.node.kind == "flow_run" and shown.attributes["status"] == "completed"
    children = shown.relations["children"]
    # load_spec, two reads, choose_split, two fits, rank_candidates, write_outputs; the
    # featurize step holds the batch.
    assert children.totals == {"task_run": 8, "step": 1}
    assert {n.kind for n in shown.relations["associated with"].nodes} == {"software", "person"}
    fit = next(n for n in children.nodes if n.name == "fit")
    used = show(small.catalog, fit.id).relations["used"]
    assert _ids(used.nodes) == {small.runs[1]["split"], small.runs[1]["features"]}


def test_show_names_what_it_cannot_find_or_tell_apart(small: Small) -> None:
    catalog = small.catalog
    with pytest.raises(NotFoundError, match="'nope:1'"):
        show(catalog, "nope:1")
    with pytest.raises(NotFoundError, match="'0badcafe' is ambiguous") as raised:
        resolve(catalog, "0badcafe")
    assert all(run_id in str(raised.value) for run_id in RUN_IDS)
    with pytest.raises(NotFoundError, match="name 'mp' is ambiguous") as raised:
        show(catalog, "mp")
    assert all(run["snapshots"][0] in str(raised.value) for run in small.runs)
    with pytest.raises(NotFoundError):
        show(catalog, small.runs[0]["ranking"][:7])  # too short to be a prefix


def test_summarize_shortens_bulky_values() -> None:
    value = {"ids": [f"mp:{i}" for i in range(20)], "text": "x" * 500, "few": [1, 2]}
    assert summarize(value) == {
        "ids": "<20 items: mp:0, mp:1, mp:2, …>",
        "text": "x" * 200 + "… (500 characters)",
        "few": [1, 2],
    }


# -- two real campaign runs --------------------------------------------------------------
def _ranking_csv(run: dict[str, Any]) -> pd.DataFrame:
    return pd.read_csv(run["output_dir"] / "ranking.csv").set_index("id")


def _input_csv(run: dict[str, Any]) -> Path:
    for line in Path(run["spec"]).read_text().splitlines():
        if line.strip().startswith("path:"):
            return Path(line.split(":", 1)[1].strip())
    raise AssertionError(f"no path in {run['spec']}")


@pytest.fixture(scope="module")
def real(campaign_runs) -> Iterator[tuple[Catalog, ArtifactStore, list[dict[str, Any]]]]:
    with Catalog(campaign_runs.catalog_url) as catalog:
        yield catalog, ArtifactStore(campaign_runs.artifact_dir), campaign_runs.runs


@pytest.mark.slow
def test_real_snapshot_impact_and_runs(real) -> None:
    catalog, _, runs = real
    files = [_input_csv(run) for run in runs]
    shas = [file_sha256(path) for path in files]
    assert shas[0] != shas[1]  # two files: the runs share no snapshot
    for run, path, sha in zip(runs, files, shas, strict=True):
        assert [r.id for r in find_runs(catalog, snapshot_sha256=sha)] == [run["run_id"]]
        snapshot = next(
            s for s in catalog.find_entities("source_snapshot") if s.attributes["sha256"] == sha
        )
        found = impact(catalog, snapshot.id)
        assert [r.id for r in found.runs] == [run["run_id"]]
        ranking = catalog.run_entities(run["run_id"], ["ranking"])
        assert [e.id for e in found.rankings] == [e.id for e in ranking]
        assert [e.name for e in found.reports] == [f"report:{run['run_id']}"]
        with open(path, newline="") as handle:
            rows = sum(1 for _ in csv.DictReader(handle))
        # Row 7 cannot be read: an error, the other rows records. (Row 12's featurization
        # error is derived from its record, not from the snapshot.)
        assert found.per_record == {"structure_record": rows - 1, "record_error": 1}


@pytest.mark.slow
def test_real_model_impact(real) -> None:
    catalog, _, runs = real
    for run in runs:
        for model in catalog.run_entities(run["run_id"], ["model"]):
            derived = [
                e.subject_id for e in catalog.edges(relation="wasDerivedFrom", object_id=model.id)
            ]
            predictions = [e for e in catalog.get_entities(derived) if e.kind == "prediction_set"]
            assert len(predictions) == 1
            ranking = catalog.run_entities(run["run_id"], ["ranking"])[0]
            found = impact(catalog, model.id)
            assert [(e.kind, e.id) for e in found.entities] == [
                ("prediction_set", predictions[0].id),
                ("ranking", ranking.id),
                ("report", catalog.find_entities("report", f"report:{run['run_id']}")[0].id),
            ]


@pytest.mark.slow
def test_real_diff_runs_against_the_ranking_files(real) -> None:
    catalog, artifacts, runs = real
    first, second = _ranking_csv(runs[0]), _ranking_csv(runs[1])
    diff = diff_runs(catalog, artifacts, runs[0]["run_id"], runs[1]["run_id"])
    held_out = catalog.run_entities(runs[1]["run_id"], ["data_split"])[0].attributes["test_ids"]
    only_second = [i for i in held_out if i not in first.index and i in second.index]
    assert sorted(c.id for c in diff.new) == sorted(only_second)
    assert len(diff.new) > 0
    assert [c.rank for c in diff.new] == sorted(second.loc[only_second, "rank"])
    assert [c.id for c in diff.dropped] == sorted(
        set(first.index) - set(second.index), key=lambda i: first.loc[i, "rank"]
    )
    both = first.index.intersection(second.index)
    deltas = {i: int(second.loc[i, "rank"] - first.loc[i, "rank"]) for i in both}
    assert {m.id: m.delta for m in diff.moves} == {i: d for i, d in deltas.items() if d}
    assert {m.id: (m.rank_a, m.rank_b) for m in diff.moves} == {
        i: (first.loc[i, "rank"], second.loc[i, "rank"]) for i, d in deltas.items() if d
    }
    hit_a, hit_b = first["meets_criteria"], second["meets_criteria"]
    assert set(diff.new_hits) == {i for i in both if hit_b[i] and not hit_a[i]}
    assert set(diff.dropped_hits) == {i for i in both if hit_a[i] and not hit_b[i]}
    assert {"source_snapshot", "model"} <= {change.kind for change in diff.inputs}
    # The second run wrote the same comparison into its metrics.json.
    changes = json.loads((Path(runs[1]["output_dir"]) / "metrics.json").read_text())["changes"]
    assert changes["previous_run"] == runs[0]["run_id"]
    assert changes["new_candidates"]["count"] == len(diff.new)
    assert changes["dropped_candidates"]["count"] == len(diff.dropped)
    assert changes["moved"] == len(diff.moves) and changes["unchanged"] == diff.unchanged
    new_hits = [c.id for c in diff.new if c.meets_criteria] + diff.new_hits
    assert changes["new_hits"]["count"] == len(new_hits)


@pytest.mark.slow
def test_real_lineage_of_a_shared_record_names_its_own_runs_snapshot(real) -> None:
    catalog, artifacts, runs = real
    first, second = _ranking_csv(runs[0]), _ranking_csv(runs[1])
    shared = first.index.intersection(second.index)[0]
    for run in runs:
        found = lineage(catalog, artifacts, shared, run_id=run["run_id"])
        snapshots = [e for e in found.entities if e.kind == "source_snapshot"]
        assert [e.attributes["sha256"] for e in snapshots] == [file_sha256(_input_csv(run))]


@pytest.mark.slow
def test_real_show_and_candidates(real) -> None:
    catalog, artifacts, runs = real
    ranking = _ranking_csv(runs[0])
    name = ranking.index[0]
    record = show(catalog, name)
    assert record.node.kind == "structure_record" and record.node.name == name
    assert record.attributes["source_id"] == name.split(":")[1]
    # A record is derived into the run's feature table, and through it into the ranking.
    into = _ids(record.relations["derived into"].nodes)
    tables = {e.id for e in catalog.run_entities(runs[0]["run_id"], ["feature_table"])}
    assert into & tables
    entity = catalog.run_entities(runs[0]["run_id"], ["ranking"])[0]
    assert entity.id in _ids(impact(catalog, record.node.id).rankings)
    assert show(catalog, entity.id[:12]).node.id == entity.id
    passes = (ranking["pred_band_gap"] >= 0.2) & (ranking["pred_heat_of_formation"] <= 1.0)
    criteria = [
        {"property": "band_gap", "min": 0.2},
        {"property": "heat_of_formation", "max": 1.0},
    ]
    ranking_id, table = ranking_table(catalog, artifacts, runs[0]["run_id"])
    found = candidate_rows(meeting_criteria(table, criteria, ranking_id))
    assert found, "some candidates pass these looser criteria"
    assert [c.id for c in found] == list(ranking[passes].sort_values("rank").index)
    assert [c.id for c in find_candidates(catalog, artifacts, runs[0]["run_id"])] == list(
        ranking.index[ranking["meets_criteria"]]
    )


def test_a_ranking_row_is_read_from_its_row_group(tmp_path: Path) -> None:
    # A stored ranking is written in row groups; a lineage decodes the ids, then one group.
    artifacts = ArtifactStore(tmp_path)
    ids = [f"proto:c{i}" for i in range(250)]
    frame = pd.DataFrame(
        {"rank": range(1, 251), "p_meets": [i / 250 for i in range(250)]},
        index=pd.Index(ids, name="id"),
    )
    sha = artifacts.put_bytes(frame_to_parquet(frame, row_group_size=100))
    assert pq.ParquetFile(artifacts.path_for(sha)).num_row_groups == 3
    ranking = Entity.new("ranking", "ranking:test", {"artifact_sha256": sha})
    for name in ("proto:c0", "proto:c150", "proto:c249"):
        assert ranking_row(artifacts, ranking, name) == {"id": name, **frame.loc[name].to_dict()}
    assert ranking_row(artifacts, ranking, "proto:c250") is None


def test_lineage_in_each_run_names_the_version_and_snapshots_that_run_read(small: Small) -> None:
    # Record mp:3 changed between releases 1 and 2; every run's lineage of every candidate it
    # ranked starts from that run's ranking row and ends at the version that run read.
    checked = 0
    for run in small.runs:
        for name, row in run["frame"].iterrows():
            found = lineage(small.catalog, small.artifacts, name, run_id=run["run_id"])
            assert found.record.id == run["record_ids"][name]
            assert found.ranking.id == run["ranking"]
            assert found.row["rank"] == row["rank"]
            snapshots = {e.id for e in found.entities if e.kind == "source_snapshot"}
            assert snapshots <= set(run["snapshots"])
            checked += 1
    assert checked == sum(len(run["frame"]) for run in small.runs)


def test_lineage_passes_over_a_damaged_newer_ranking_and_says_so(tmp_path: Path) -> None:
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        artifacts = ArtifactStore(tmp_path / "artifacts")
        first = record_campaign(catalog, artifacts, RUN_IDS[0], [release(1), lab_file()], 1, 0.1)
        second = record_campaign(catalog, artifacts, RUN_IDS[1], [release(1)], 2, 0.1)
        both = sorted(set(first["frame"].index) & set(second["frame"].index))
        assert both
        later = catalog.get_entity(second["ranking"])
        artifacts.path_for(later.attributes["artifact_sha256"]).write_bytes(b"not parquet")
        # The newer ranking cannot be read: the candidate's row comes from the older one,
        # and the lineage names the one passed over.
        found = lineage(catalog, artifacts, both[0])
        assert found.ranking.id == first["ranking"]
        assert found.row["rank"] == first["frame"].loc[both[0], "rank"]
        assert "passed over" in found.damaged[second["ranking"]]
        assert "corrupt" in found.damaged[second["ranking"]]
        # Asked for the damaged run's ranking, the lineage fails naming the artifact.
        with pytest.raises(ArtifactError, match="corrupt|missing"):
            lineage(catalog, artifacts, both[0], run_id=RUN_IDS[1])
