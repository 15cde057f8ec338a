"""FAIR exports of a campaign run: PROV-JSON and PROV-O, RO-Crate, schema.org JSON-LD.

The fast tests record small campaigns through the recorder (real structures, real xgboost
models, real output files) and read every export back with an independent parser: prov
for PROV-JSON, rdflib for Turtle and JSON-LD, rocrate for the crate. The slow tests do
the same on the two real perovskite runs of the ``campaign_runs`` fixture.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import prov.model as pm
import pytest
import rdflib
import xgboost
import yaml
from pymatgen.core import Lattice, Structure
from rocrate.rocrate import ROCrate
from sqlalchemy import select

from matscreen.catalog import ArtifactStore, Catalog, schema
from matscreen.catalog.export import (
    export_prov,
    export_rocrate,
    licence_of,
    redact,
    run_subgraph,
    secret_values,
    write_run_crate,
)
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.tasks.errors import ArtifactError, CatalogError, NotFoundError
from matscreen.tasks.featurize.batch import FeatureTable
from matscreen.tasks.hashing import structure_hash
from matscreen.tasks.models import regression_metrics
from matscreen.tasks.models.records import PredictionRecord
from matscreen.tasks.rank.criteria import rank_candidates
from matscreen.tasks.report.outputs import shortlist_frame, write_outputs
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.sources.records import (
    IngestResult,
    RecordFailure,
    SourceSnapshot,
    StructureRecord,
)
from matscreen.tasks.spec import CriterionSpec
from matscreen.tasks.split import DataSplit

PROV_NS = rdflib.Namespace("http://www.w3.org/ns/prov#")
MS = rdflib.Namespace("urn:matscreen:")
SDO = rdflib.Namespace("https://schema.org/")
MP_CITATION = "A. Jain et al., APL Materials 1, 011002 (2013)"
LAB_CITATION = "B. Example, lab notebook 7 (2024)"
TARGETS = {"band_gap": "eV", "formation_energy_per_atom": "eV/atom"}
CRITERIA = [
    {"property": "band_gap", "min": 1.0, "max": 3.0, "unit": "eV"},
    {"property": "formation_energy_per_atom", "min": None, "max": -1.0, "unit": "eV/atom"},
]
SPEC = {
    "name": "export-check",
    "description": "Oxide perovskites with a visible-light gap.",
    "sources": [
        {"name": "mp", "kind": "mp", "licence": "CC-BY-4.0", "citation": [MP_CITATION]},
        {"name": "lab", "kind": "files", "licence": "MIT (lab data)", "citation": [LAB_CITATION]},
    ],
    "split": {"method": "random", "test_fraction": 0.3, "seed": 7},
    "models": [{"target": t, "algorithm": "xgboost"} for t in TARGETS],
    "criteria": CRITERIA,
    "shortlist_size": 3,
}
ELEMENTS = [("Sr", "Ti"), ("Ba", "Ti"), ("Ca", "Zr"), ("Sr", "Zr"), ("Ba", "Hf"), ("Ca", "Ti")]


def _run(name: str) -> RunInfo:
    return RunInfo(name, utc_now(), utc_now(), "testhost", os.getpid())


def _perovskite(a_site: str, b_site: str, a: float) -> dict[str, Any]:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    species = [a_site, b_site, "O", "O", "O"]
    return Structure(Lattice.cubic(a), species, coords).as_dict()


def _record(source: str, i: int, a_site: str, b_site: str, a: float, **extra) -> StructureRecord:
    return StructureRecord(
        source=source,
        source_id=f"{a_site}{b_site}O3-{i}",
        row=i + 1,
        formula=f"{a_site}{b_site}O3",
        structure=_perovskite(a_site, b_site, a),
        properties={"band_gap": 0.5 + 0.4 * i, "formation_energy_per_atom": -0.3 * i},
        units=dict(TARGETS),
        **extra,
    )


@dataclass
class Built:
    """A recorded campaign run and what went into it."""

    catalog: Catalog
    artifacts: ArtifactStore
    run_id: str
    output_dir: Path
    snapshots: dict[str, SourceSnapshot]
    records: list[StructureRecord]
    failures: list[RecordFailure]
    train_ids: list[str]
    models: int


def record_campaign(
    catalog: Catalog,
    artifacts: ArtifactStore,
    output_dir: Path,
    lab_rows: int = 4,
    parameters: dict[str, Any] | None = None,
    report_html: str = "<html><body>report</body></html>\n",
) -> Built:
    """Record a whole campaign run: two sources, a duplicate, failures, two models, outputs.

    ``lab_rows`` sets the lab file's row count, so two runs with different values read
    different lab snapshots but the same records.
    """
    run_id = f"run-{secrets.token_hex(6)}"
    recorder = CampaignRecorder(
        catalog,
        artifacts,
        run_id,
        "screen-candidates",
        {"spec_path": "/campaigns/export-check.yaml", **(parameters or {})},
        {"matscreen": "0.1.0", "xgboost": xgboost.__version__, "numpy": np.__version__},
        "0" * 40,
        "alice",
        "testhost",
    )
    mp = SourceSnapshot(
        source="mp",
        kind="mp",
        location="https://api.materialsproject.org/materials/summary/",
        sha256="a" * 64,
        size_bytes=52_000,
        n_rows=6,
        retrieved_at=utc_now(),
        licence="CC-BY-4.0",
        citation=(MP_CITATION,),
        query={"chemsys": ["Sr-Ti-O", "Ba-Ti-O"]},
        database_version="2025.09.25",
    )
    lab = SourceSnapshot(
        source="lab",
        kind="files",
        location="/data/lab/structures.jsonl",
        sha256=hashlib.sha256(f"lab rows {lab_rows}".encode()).hexdigest(),
        size_bytes=900 * lab_rows,
        n_rows=lab_rows,
        retrieved_at=utc_now(),
        licence="MIT (lab data)",
        citation=(LAB_CITATION,),
    )
    mp_records = [_record("mp", i, a, b, 3.9 + 0.05 * i) for i, (a, b) in enumerate(ELEMENTS)]
    lab_records = [
        _record("lab", 10 + i, a, b, 4.3 + 0.05 * i) for i, (a, b) in enumerate(ELEMENTS[:2])
    ]
    # The same crystal as mp's first record, reported again by the lab.
    duplicate = _record("lab", 20, "Sr", "Ti", 3.9, duplicate_of=mp_records[0].id)
    lab_records.append(duplicate)
    ingest_failure = RecordFailure("lab", "broken", 4, "ingest", "row 4: unreadable structure")

    with recorder.running():
        recorder.spec(SPEC, "b" * 64, _run("load_spec"))
        first = recorder.ingest(IngestResult(mp, mp_records, []), _run("read_source"))
        second = recorder.ingest(
            IngestResult(lab, lab_records, [ingest_failure]),
            _run("read_source"),
            known=first.record_ids,
        )
        record_ids = {**first.record_ids, **second.record_ids}
        unique = mp_records + lab_records[:2]
        featurized = unique[:-1]  # the last one "fails" to featurize
        feature_failure = RecordFailure(
            "lab", unique[-1].source_id, unique[-1].row, "featurize", "no element data"
        )
        frame = pd.DataFrame(
            {
                "volume": [Structure.from_dict(r.structure).volume for r in featurized],
                "a_z": [Structure.from_dict(r.structure)[0].specie.Z for r in featurized],
            },
            index=pd.Index([r.id for r in featurized], name="id"),
        )
        ids = list(frame.index)
        test_ids, train_ids = ids[:3], ids[3:]
        split = DataSplit("random", 7, 0.3, sorted(train_ids), sorted(test_ids))
        split_id = recorder.split(
            split, _run("choose_split"), [first.snapshot_id, second.snapshot_id]
        )
        features_id = recorder.features(
            FeatureTable(frame, {r.id: "no element data" for r in unique[-1:]}),
            [_run("featurize_packed")],
            {"preset": "fast", "featurizers": ["volume", "a_z"]},
            ["@article{example}"],
            record_ids,
            failures=[feature_failure],
        )
        labels = {r.id: r.properties for r in featurized}
        stored = []
        predictions = {}
        for target in TARGETS:
            y = np.array([labels[i][target] for i in train_ids])
            model = xgboost.XGBRegressor(n_estimators=5, max_depth=2, random_state=7, n_jobs=1)
            model.fit(frame.loc[train_ids].to_numpy(), y)
            y_pred = model.predict(frame.loc[test_ids].to_numpy()).astype(float).tolist()
            predictions[target] = y_pred
            trained = SimpleNamespace(
                target=target,
                algorithm="xgboost",
                params={"n_estimators": 5, "max_depth": 2},
                feature_labels=list(frame.columns),
                train_ids=train_ids,
                train_label_mean=float(y.mean()),
                clip_min=None,
                model_json=bytes(model.get_booster().save_raw("json")),
                versions={"xgboost": xgboost.__version__},
            )
            record = PredictionRecord(
                target, test_ids, [labels[i][target] for i in test_ids], y_pred, float(y.mean()), 3
            )
            stored.append(
                recorder.model(
                    trained,
                    record,
                    regression_metrics(record),
                    _run("fit_and_evaluate"),
                    split_id,
                    features_id,
                )
            )
        formulas = {r.id: r.formula for r in featurized}
        candidates = pd.DataFrame(
            {
                "id": test_ids,
                "formula": [formulas[i] for i in test_ids],
                **{f"pred_{t}": v for t, v in predictions.items()},
            }
        )
        ranking = rank_candidates(candidates, [CriterionSpec(**c) for c in CRITERIA])
        ranking_id = recorder.ranking(
            ranking, _run("rank_candidates"), CRITERIA, [p for _, p in stored]
        )
        shortlist = shortlist_frame(ranking, SPEC["shortlist_size"])
        files = write_outputs(output_dir, ranking, shortlist, {"run_id": run_id}, report_html)
        recorder.report(files, _run("write_outputs"), ranking_id, [m for m, _ in stored])
    return Built(
        catalog,
        artifacts,
        run_id,
        output_dir,
        {"mp": mp, "lab": lab},
        mp_records + lab_records,
        [ingest_failure, feature_failure],
        train_ids,
        len(stored),
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Built]:
    """Two runs in one catalog: the second re-reads the same records from a lab file with
    one more row, so it reuses every entity of the first but the lab snapshot."""
    folder = tmp_path_factory.mktemp("export")
    catalog = Catalog(f"sqlite:///{folder / 'catalog.sqlite'}")
    artifacts = ArtifactStore(folder / "artifacts")
    first = record_campaign(catalog, artifacts, folder / "run0", lab_rows=4)
    second = record_campaign(catalog, artifacts, folder / "run1", lab_rows=5)
    return first, second


# -- an independent account of a run's part of the catalog ----------------------------------
def expected_scope(catalog: Catalog, run_id: str) -> tuple[Counter, Counter, set[str]]:
    """Entity and activity counts per kind of a run, by a plain walk over every edge.

    Returns activity kinds, entity kinds and the ids of the entities the run's activities
    generated or used.
    """
    children = defaultdict(list)
    for activity in catalog.activities():
        children[activity.parent_id].append(activity)
    run = catalog.get_activity(run_id)
    activities, frontier = [run], [run]
    while frontier:
        frontier = [child for a in frontier for child in children[a.id]]
        activities += frontier
    ids = {a.id for a in activities}
    table = schema.edges
    with catalog.engine.connect() as conn:
        edges = conn.execute(
            select(table.c.relation, table.c.subject_id, table.c.object_id, table.c.recorded_at)
        ).all()
    direct = {s for r, s, o, _ in edges if r == "wasGeneratedBy" and o in ids}
    direct |= {o for r, s, o, _ in edges if r == "used" and s in ids}
    reached, frontier = set(direct), set(direct)
    while frontier:
        frontier = {
            o
            for r, s, o, at in edges
            if r in ("wasDerivedFrom", "alternateOf") and s in frontier and at <= run.ended_at
        } - reached
        reached |= frontier
    entities = catalog.get_entities(sorted(reached))
    return Counter(a.kind for a in activities), Counter(e.kind for e in entities), direct


def _prov_kinds(doc: pm.ProvDocument, record_type: type) -> Counter:
    found = Counter()
    for record in doc.get_records(record_type):
        (kind,) = record.get_attribute(pm.PROV_TYPE)
        found[kind.localpart] += 1
    return found


def _derived_from(doc: pm.ProvDocument) -> dict[str, set[str]]:
    graph = defaultdict(set)
    for relation in doc.get_records(pm.ProvDerivation):
        attributes = dict(relation.formal_attributes)
        graph[str(attributes[pm.PROV_ATTR_GENERATED_ENTITY])].add(
            str(attributes[pm.PROV_ATTR_USED_ENTITY])
        )
    return graph


def _upstream(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, frontier = {start}, {start}
    while frontier:
        frontier = {o for s in frontier for o in graph.get(s, ())} - seen
        seen |= frontier
    return seen


def _entities_of(doc: pm.ProvDocument, kind: str) -> list[pm.ProvEntity]:
    return [
        e
        for e in doc.get_records(pm.ProvEntity)
        if next(iter(e.get_attribute(pm.PROV_TYPE))).localpart == kind
    ]


def _entity_by_label(doc: pm.ProvDocument, kind: str) -> dict[str, pm.ProvEntity]:
    return {str(next(iter(e.get_attribute(pm.PROV_LABEL)))): e for e in _entities_of(doc, kind)}


def _single(record: pm.ProvRecord, name: str) -> Any:
    (value,) = record.get_attribute(f"matscreen:{name}")
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- PROV -----------------------------------------------------------------------------------
def test_run_subgraph_holds_the_run_and_what_it_came_from(two_runs) -> None:
    first, second = two_runs
    for built in two_runs:
        graph = run_subgraph(built.catalog, built.run_id)
        activity_kinds, entity_kinds, direct = expected_scope(built.catalog, built.run_id)
        assert Counter(a.kind for a in graph.activities) == activity_kinds
        assert Counter(e.kind for e in graph.entities.values()) == entity_kinds
        assert graph.direct == direct
        assert graph.run.id == built.run_id and graph.activities[0] is graph.run

    # Counted from what went in: 6 mp and 3 lab records, one ingest and one featurize
    # failure, a model, training set and prediction set per target.
    graph = run_subgraph(first.catalog, first.run_id)
    kinds = Counter(e.kind for e in graph.entities.values())
    assert kinds["structure_record"] == len(first.records) == 9
    assert kinds["record_error"] == len(first.failures)
    assert kinds["model"] == kinds["training_set"] == kinds["prediction_set"] == first.models
    assert kinds["source_snapshot"] == 2
    assert {a.kind for a in graph.agents.values()} == {"software", "person"}

    # The second run read a new lab snapshot; its reused records still point back to the
    # first run's lab snapshot, which it reaches upstream but did not read itself. The
    # first run's export never shows the later snapshot.
    later = run_subgraph(second.catalog, second.run_id)
    lab = {
        e.attributes["n_rows"]: e.id for e in later.of_kind("source_snapshot") if e.name == "lab"
    }
    assert set(lab) == {4, 5}
    assert lab[5] in later.direct and lab[4] not in later.direct
    # Reused content is "used", not generated again, and still belongs to the later run.
    assert {e.kind for e in later.entities.values() if e.id in later.direct} == set(kinds)
    assert [
        e.attributes["n_rows"] for e in graph.of_kind("source_snapshot") if e.name == "lab"
    ] == [4]


def test_prov_json_and_turtle_read_back_with_the_run_facts(two_runs, tmp_path: Path) -> None:
    built = two_runs[0]
    paths = export_prov(built.catalog, built.run_id, tmp_path)
    doc = pm.ProvDocument.deserialize(paths.json, format="json")

    activity_kinds, entity_kinds, _ = expected_scope(built.catalog, built.run_id)
    assert _prov_kinds(doc, pm.ProvEntity) == entity_kinds
    assert _prov_kinds(doc, pm.ProvActivity) == activity_kinds
    assert len(list(doc.get_records(pm.ProvAlternate))) == 1

    # The shortlist's best candidate: from the report, through the ranking, to its record
    # and on to the snapshot it was read from, which carries licence and citation.
    best = pd.read_csv(built.output_dir / "shortlist.csv").iloc[0]
    (report,) = _entity_by_label(doc, "report").values()
    reachable = _upstream(_derived_from(doc), str(report.identifier))
    records = _entity_by_label(doc, "structure_record")
    record = records[best["id"]]
    assert str(record.identifier) in reachable
    snapshots = {str(s.identifier): s for s in _entities_of(doc, "source_snapshot")}
    origin = _upstream(_derived_from(doc), str(record.identifier)) & set(snapshots)
    (snapshot,) = [snapshots[i] for i in origin]
    source = built.snapshots[best["id"].split(":")[0]]
    assert _single(snapshot, "licence") == source.licence
    assert snapshot.get_attribute("matscreen:citation") == set(source.citation)
    assert str(snapshot.identifier) in reachable

    # The structure itself is not exported, its hash is.
    original = next(r for r in built.records if r.id == best["id"])
    assert _single(record, "structure_sha256") == structure_hash(original.structure)
    assert not any("structure." in str(k) for k, _ in record.attributes)
    (mp,) = [s for s in snapshots.values() if _single(s, "location").startswith("https://")]
    assert _single(mp, "database_version") == "2025.09.25"

    run = next(
        a
        for a in doc.get_records(pm.ProvActivity)
        if a.identifier.uri == f"urn:matscreen:activity:{built.run_id}"
    )
    stored = built.catalog.get_activity(built.run_id)
    assert run.get_startTime().isoformat() == stored.started_at
    assert run.get_endTime().isoformat() == stored.ended_at

    graph = rdflib.Graph().parse(paths.turtle, format="turtle")
    rows = graph.query(
        """
        SELECT DISTINCT ?licence ?citation WHERE {
            ?report a ms:report ; prov:wasDerivedFrom+ ?snapshot .
            ?snapshot a ms:source_snapshot ; ms:licence ?licence ; ms:citation ?citation .
        }
        """,
        initNs={"ms": MS, "prov": PROV_NS},
    )
    assert {(str(a), str(b)) for a, b in rows} == {
        ("CC-BY-4.0", MP_CITATION),
        ("MIT (lab data)", LAB_CITATION),
    }
    assert len(set(graph.subjects(rdflib.RDF.type, PROV_NS.Activity))) == sum(
        activity_kinds.values()
    )
    relations = {p for _, p, _ in graph if str(p).startswith(str(PROV_NS))}
    for name in (
        "used",
        "wasGeneratedBy",
        "wasDerivedFrom",
        "alternateOf",
        "wasAssociatedWith",
        "wasAttributedTo",
    ):
        assert PROV_NS[name] in relations, name


# -- RO-Crate and schema.org ----------------------------------------------------------------
def _crate_files(crate: ROCrate) -> dict[str, Any]:
    return {e.id: e for e in crate.data_entities}


def test_rocrate_lists_every_file_with_its_real_hash(two_runs, tmp_path: Path) -> None:
    built = two_runs[0]
    out = tmp_path / "crate"
    written = export_rocrate(
        built.catalog, built.artifacts, built.run_id, out, outputs_dir=built.output_dir
    )
    assert written.omitted == []
    crate = ROCrate(out)
    files = _crate_files(crate)
    on_disk = {p.name for p in out.iterdir()} - {"ro-crate-metadata.json"}
    assert set(files) == on_disk
    for name, entity in files.items():
        data = (out / name).read_bytes()
        assert entity["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entity["contentSize"] == str(len(data)), name
    for name in ("shortlist.csv", "ranking.csv", "metrics.json", "report.html"):
        assert files[name]["sha256"] == _sha256(built.output_dir / name)

    spec = json.loads((out / "spec.json").read_text())
    assert spec == SPEC

    sources = {e["name"]: e for e in crate.contextual_entities if e.type == "Dataset"}
    assert set(sources) == {"mp", "lab"}
    assert sources["mp"]["license"]["url"] == "https://creativecommons.org/licenses/by/4.0/"
    assert sources["mp"]["license"].id == "https://spdx.org/licenses/CC-BY-4.0"
    assert sources["mp"]["citation"] == [MP_CITATION]
    assert sources["mp"]["version"] == "2025.09.25"
    assert sources["lab"]["license"]["name"] == "MIT"
    assert sources["lab"]["license"]["description"] == "MIT (lab data)"
    assert sources["lab"]["citation"] == [LAB_CITATION]
    assert sources["lab"]["sha256"] == built.snapshots["lab"].sha256

    models = {
        e.name: e
        for e in built.catalog.find_entities("model")
        if e.id in run_subgraph(built.catalog, built.run_id).direct
    }
    cards = [json.loads((out / n).read_text()) for n in files if n.startswith("model-card-")]
    assert len(cards) == len(models) == built.models
    for card in cards:
        model = models[card["model"]]
        assert card["metrics"] == model.attributes["metrics"]
        assert card["hyperparameters"] == model.attributes["params"]
        assert card["artifact"]["sha256"] == model.attributes["artifact_sha256"]
        artifact = built.artifacts.path_for(model.attributes["artifact_sha256"])
        assert card["artifact"]["bytes"] == artifact.stat().st_size
        assert card["training_set"][0]["n_rows"] == len(built.train_ids)
        assert card["unit"] == TARGETS[card["target"]]

    (action,) = [e for e in crate.contextual_entities if e.type == "CreateAction"]
    run = built.catalog.get_activity(built.run_id)
    assert (action["startTime"], action["endTime"]) == (run.started_at, run.ended_at)
    assert action["instrument"]["name"] == "matscreen"
    assert action["instrument"]["version"] == "0.1.0"
    assert {r["name"] for r in action["instrument"]["softwareRequirements"]} == {
        "xgboost",
        "numpy",
    }
    assert {o.id for o in action["object"]} >= {"spec.json"}
    assert {o["name"] for o in action["object"] if o.type == "Dataset"} == {"mp", "lab"}
    assert {r.id for r in action["result"]} >= {"shortlist.csv", "ranking.csv", "report.html"}
    assert action["agent"]["name"] == "alice"


def test_dataset_jsonld_parses_and_declares_licences(two_runs, tmp_path: Path) -> None:
    built = two_runs[0]
    written = export_rocrate(
        built.catalog, built.artifacts, built.run_id, tmp_path, outputs_dir=built.output_dir
    )
    graph = rdflib.Graph().parse(written.dataset, format="json-ld")
    # The sources are datasets too; the described one is the dataset nothing is based on.
    (dataset,) = [
        s
        for s in graph.subjects(rdflib.RDF.type, SDO.Dataset)
        if (None, SDO.isBasedOn, s) not in graph
    ]
    licences = set(graph.objects(dataset, SDO.license))
    assert licences == {
        rdflib.URIRef("https://spdx.org/licenses/CC-BY-4.0"),
        rdflib.URIRef("https://spdx.org/licenses/MIT"),
    }
    assert graph.value(
        rdflib.URIRef("https://spdx.org/licenses/CC-BY-4.0"), SDO.url
    ) == rdflib.Literal("https://creativecommons.org/licenses/by/4.0/")
    assert {str(c) for c in graph.objects(dataset, SDO.citation)} == {MP_CITATION, LAB_CITATION}
    downloads = {
        str(graph.value(d, SDO.name)): str(graph.value(d, SDO.sha256))
        for d in graph.objects(dataset, SDO.distribution)
    }
    assert downloads == {
        name: _sha256(built.output_dir / name) for name in ("shortlist.csv", "ranking.csv")
    }
    variables = {
        str(graph.value(v, SDO.name)): str(graph.value(v, SDO.unitText))
        for v in graph.objects(dataset, SDO.variableMeasured)
    }
    assert {k: v for k, v in variables.items() if k.startswith("pred_")} == {
        f"pred_{t}": unit for t, unit in TARGETS.items()
    }
    columns = set(pd.read_csv(built.output_dir / "ranking.csv").columns)
    assert set(variables) <= columns
    assert str(graph.value(next(iter(graph.objects(dataset, SDO.creator))), SDO.name)) == "alice"


def test_run_subgraph_without_records_keeps_the_rest_and_the_units(two_runs) -> None:
    """A crate reads the run without its structure records (a million at scale): every
    other node and edge is the same, and the label units come from the training sets."""
    for built in two_runs:
        assert_same_without_records(built.catalog, built.run_id)


def assert_same_without_records(catalog: Catalog, run_id: str) -> None:
    """The run's subgraph without records is the full one less the records and their edges."""
    full = run_subgraph(catalog, run_id)
    light = run_subgraph(catalog, run_id, records=False)
    bulk = {i for i, e in full.entities.items() if e.kind in ("structure_record", "record_error")}
    assert bulk and not bulk & set(light.entities)
    assert set(light.entities) == set(full.entities) - bulk
    assert light.direct == full.direct - bulk
    assert light.activities == full.activities and light.agents == full.agents
    assert light.edges == [
        e for e in full.edges if e.subject_id not in bulk and e.object_id not in bulk
    ]
    assert full.units and light.units == full.units


def test_run_crate_describes_the_run_folder_in_place(two_runs, tmp_path: Path) -> None:
    built = two_runs[1]
    folder = tmp_path / "run"
    shutil.copytree(built.output_dir, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    metadata = write_run_crate(built.catalog, built.artifacts, built.run_id, folder)
    assert metadata == folder / "ro-crate-metadata.json"
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p != metadata} == before

    files = _crate_files(ROCrate(folder))
    assert set(files) == set(before)
    for name, entity in files.items():
        assert entity["sha256"] == _sha256(folder / name)

    # A file changed after the run is refused, naming it.
    ranking = folder / "ranking.csv"
    ranking.write_text(ranking.read_text().replace("True", "False").replace("1", "2"))
    with pytest.raises(ArtifactError, match="ranking.csv"):
        write_run_crate(built.catalog, built.artifacts, built.run_id, folder)


def test_without_the_output_folder_tables_are_regenerated(tmp_path: Path) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    built = record_campaign(catalog, artifacts, tmp_path / "run")
    recorded = {name: _sha256(built.output_dir / name) for name in ("ranking.csv", "shortlist.csv")}
    shutil.rmtree(built.output_dir)

    written = export_rocrate(catalog, artifacts, built.run_id, tmp_path / "crate")
    assert sorted(written.omitted) == ["metrics.json", "report.html"]
    for name, sha in recorded.items():
        assert _sha256(tmp_path / "crate" / name) == sha
        assert _crate_files(ROCrate(tmp_path / "crate"))[name]["sha256"] == sha


def test_unknown_or_wrong_run_ids_are_refused(two_runs) -> None:
    built = two_runs[0]
    with pytest.raises(NotFoundError, match="no-such-run"):
        run_subgraph(built.catalog, "no-such-run")
    step = built.catalog.activities(parent_id=built.run_id)[0]
    with pytest.raises(NotFoundError, match=f"{step.id} is a step, not a campaign run"):
        run_subgraph(built.catalog, step.id)


def test_licence_texts_map_to_spdx() -> None:
    assert licence_of("CC-BY-4.0").url == "https://creativecommons.org/licenses/by/4.0/"
    assert licence_of("CC BY-SA 4.0 (see site)").name == "CC-BY-SA-4.0"
    assert licence_of("MIT (CDVAE split of the CMR data)").id == "https://spdx.org/licenses/MIT"
    unknown = licence_of("terms of use of the AFLOW consortium")
    assert unknown.url is None and unknown.id.startswith("#licence-")
    assert unknown.name == "terms of use of the AFLOW consortium"


# -- secrets --------------------------------------------------------------------------------
def test_no_secret_reaches_any_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api_key = "mpkey-" + secrets.token_hex(16)
    password = "pw-" + secrets.token_hex(12)
    monkeypatch.setenv("MP_API_KEY", api_key)
    monkeypatch.setenv(
        "MATSCREEN_CATALOG_URL", f"postgresql+psycopg://matscreen:{password}@127.0.0.1/cat"
    )
    assert {api_key, password} <= secret_values()

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    # Secrets where they should never be: a parameter holding a catalog URL with its
    # password, a key under a secret-looking name and one inside free text.
    built = record_campaign(
        catalog,
        artifacts,
        tmp_path / "run",
        parameters={
            "catalog_url": f"postgresql+psycopg://matscreen:{password}@127.0.0.1/cat",
            "mp_api_key": api_key,
            "note": f"read with key {api_key}",
        },
    )
    export_prov(catalog, built.run_id, tmp_path / "export")
    export_rocrate(catalog, artifacts, built.run_id, tmp_path / "export", built.output_dir)
    write_run_crate(catalog, artifacts, built.run_id, built.output_dir)

    exported = [p for p in (tmp_path / "export").rglob("*") if p.is_file()]
    exported.append(built.output_dir / "ro-crate-metadata.json")
    assert {p.name for p in exported} >= {"prov.json", "prov.ttl", "ro-crate-metadata.json"}
    for path in exported:
        data = path.read_bytes()
        assert api_key.encode() not in data, path
        assert password.encode() not in data, path
    # The parameters are exported, masked.
    text = (tmp_path / "export" / "prov.json").read_text()
    assert "postgresql+psycopg://matscreen:***@127.0.0.1/cat" in text
    assert '"matscreen:parameters.mp_api_key": "***"' in text
    assert '"matscreen:parameters.note": "read with key ***"' in text


def test_an_output_file_holding_a_secret_is_not_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api_key = "mpkey-" + secrets.token_hex(16)
    monkeypatch.setenv("MP_API_KEY", api_key)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    artifacts = ArtifactStore(tmp_path / "artifacts")
    built = record_campaign(
        catalog, artifacts, tmp_path / "run", report_html=f"<p>key {api_key}</p>\n"
    )
    with pytest.raises(CatalogError, match="report.html holds the value of a secret"):
        export_rocrate(catalog, artifacts, built.run_id, tmp_path / "crate", built.output_dir)
    assert not (tmp_path / "crate" / "report.html").exists()


def test_redact_masks_urls_keys_and_known_values() -> None:
    value = {
        "url": "https://user:hunter2hunter2@example.org/db?api_key=abc123&x=1",
        "nested": [{"token": "t0k3n"}, "uses s3cr3t-value-42 inline"],
        "api_key_env": "MP_API_KEY",
    }
    assert redact(value, ["s3cr3t-value-42"]) == {
        "url": "https://user:***@example.org/db?api_key=***&x=1",
        "nested": [{"token": "***"}, "uses *** inline"],
        "api_key_env": "MP_API_KEY",
    }


# -- PostgreSQL -----------------------------------------------------------------------------
def test_run_subgraph_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    with Catalog(postgres_url) as catalog:
        try:
            artifacts = ArtifactStore(tmp_path / "artifacts")
            first = record_campaign(catalog, artifacts, tmp_path / "run0", lab_rows=4)
            second = record_campaign(catalog, artifacts, tmp_path / "run1", lab_rows=5)
            for built in (first, second):
                graph = run_subgraph(catalog, built.run_id)
                activity_kinds, entity_kinds, direct = expected_scope(catalog, built.run_id)
                assert Counter(e.kind for e in graph.entities.values()) == entity_kinds
                assert Counter(a.kind for a in graph.activities) == activity_kinds
                assert graph.direct == direct
                assert_same_without_records(catalog, built.run_id)
            assert (
                Counter(e.kind for e in run_subgraph(catalog, first.run_id).entities.values())[
                    "source_snapshot"
                ]
                == 2
            )
        finally:
            schema.metadata.drop_all(catalog.engine)


# -- the real campaign runs -----------------------------------------------------------------
@pytest.mark.slow
def test_real_runs_export_their_provenance(campaign_runs, tmp_path: Path) -> None:
    with Catalog(campaign_runs.catalog_url) as catalog:
        for i, run in enumerate(campaign_runs.runs):
            paths = export_prov(catalog, run["run_id"], tmp_path / f"run{i}")
            doc = pm.ProvDocument.deserialize(paths.json, format="json")
            activity_kinds, entity_kinds, _ = expected_scope(catalog, run["run_id"])
            assert _prov_kinds(doc, pm.ProvEntity) == entity_kinds
            assert _prov_kinds(doc, pm.ProvActivity) == activity_kinds

            counts = json.loads((run["output_dir"] / "metrics.json").read_text())["counts"]
            entities = _prov_kinds(doc, pm.ProvEntity)
            assert entities["structure_record"] == counts["records"]
            assert (
                entities["record_error"] == counts["ingest_failures"] + counts["feature_failures"]
            )
            spec = yaml.safe_load(Path(run["spec"]).read_text())
            assert entities["model"] == len(spec["models"])

            # Shortlist -> report -> ranking -> record -> the snapshot of the file read.
            best = pd.read_csv(run["output_dir"] / "shortlist.csv").iloc[0]
            (report,) = _entity_by_label(doc, "report").values()
            derived = _derived_from(doc)
            record = _entity_by_label(doc, "structure_record")[best["id"]]
            assert str(record.identifier) in _upstream(derived, str(report.identifier))
            origin = _upstream(derived, str(record.identifier))
            snapshots = [
                s for s in _entities_of(doc, "source_snapshot") if str(s.identifier) in origin
            ]
            source = spec["sources"][0]
            read = [s for s in snapshots if _single(s, "location") == source["path"]]
            assert len(read) == 1
            assert _single(read[0], "licence") == source["licence"]
            assert read[0].get_attribute("matscreen:citation") == set(source["citation"])
            assert _single(read[0], "sha256") == _sha256(Path(source["path"]))

            graph = rdflib.Graph().parse(paths.turtle, format="turtle")
            assert len(set(graph.subjects(rdflib.RDF.type, PROV_NS.Entity))) == sum(
                entity_kinds.values()
            )


@pytest.mark.slow
def test_real_run_crate(campaign_runs, tmp_path: Path) -> None:
    run = campaign_runs.runs[1]
    artifacts = ArtifactStore(campaign_runs.artifact_dir)
    with Catalog(campaign_runs.catalog_url) as catalog:
        out = tmp_path / "crate"
        written = export_rocrate(catalog, artifacts, run["run_id"], out, run["output_dir"])
        folder = tmp_path / "run"
        shutil.copytree(run["output_dir"], folder)
        write_run_crate(catalog, artifacts, run["run_id"], folder)
        models = [
            e
            for e in catalog.find_entities("model")
            if e.id in run_subgraph(catalog, run["run_id"]).direct
        ]

    assert written.omitted == []
    files = _crate_files(ROCrate(out))
    for name in ("shortlist.csv", "ranking.csv", "metrics.json", "report.html"):
        real = _sha256(run["output_dir"] / name)
        assert files[name]["sha256"] == real == _sha256(out / name)
        assert _crate_files(ROCrate(folder))[name]["sha256"] == real
    for name, entity in files.items():
        assert entity["sha256"] == _sha256(out / name), name

    spec = yaml.safe_load(Path(run["spec"]).read_text())
    crate = ROCrate(out)
    (source,) = [e for e in crate.contextual_entities if e.type == "Dataset"]
    assert source["license"]["description"] == spec["sources"][0]["licence"]
    assert source["license"].id == "https://spdx.org/licenses/MIT"
    assert source["citation"] == spec["sources"][0]["citation"]

    cards = {
        json.loads((out / n).read_text())["model"]: json.loads((out / n).read_text())
        for n in files
        if n.startswith("model-card-")
    }
    assert set(cards) == {m.name for m in models} and len(models) == len(spec["models"])
    metrics = json.loads((run["output_dir"] / "metrics.json").read_text())["targets"]
    for model in models:
        card = cards[model.name]
        assert card["metrics"] == model.attributes["metrics"]
        expected = {k: v for k, v in metrics[card["target"]].items() if k != "unit"}
        assert card["metrics"] == expected

    graph = rdflib.Graph().parse(written.dataset, format="json-ld")
    licences = set(graph.objects(None, SDO.license))
    assert rdflib.URIRef("https://spdx.org/licenses/MIT") in licences
