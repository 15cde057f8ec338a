"""Provenance query speed on a large catalog, on SQLite and on PostgreSQL.

Usage: ``python benchmarks/provenance.py [--entities N] [--backend sqlite|postgresql|both]
[--repeats R]``

Builds a catalog of at least N entities shaped like a screening service's history: a
Materials-Project-like source read at six successive database releases (each release
changes half of the records and adds 5 %, so an unchanged record is one entity shared by
every release holding it), a local file read by every run (a tenth of its records repeat
the main source's and are linked by ``alternateOf``), and twelve campaign runs: one
campaign re-run at every release, a second one at the last two releases, and four that
screen the file alone. Each run has its spec, split, feature table (with featurization
errors), training sets, models, predictions, ranking and report, written by
:class:`CampaignRecorder`; the reads are written through :meth:`Catalog.record_step` with
the entities and edges the recorder's ingest writes, each record's entity built once
rather than at every read. Every constraint of the catalog is checked on the way in.

Then times, after one warm-up call, the median and the slowest of R calls of: ``lineage``
of the top candidate of the latest run, ``impact`` of a release's snapshot (read by two
runs), of the file's snapshot (read by all) and of a model, ``find_runs`` by database
version, ``diff_runs`` of the campaign at two successive releases, ``find_candidates`` of a
run, and ``show`` of a record by name. PostgreSQL is a throw-away server on loopback
(Debian's ``postgresql`` package), started and stopped here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from matscreen.catalog import Activity, ArtifactStore, Catalog, Edge, Entity, schema
from matscreen.catalog.lineage import lineage
from matscreen.catalog.queries import diff_runs, find_candidates, find_runs, impact, show
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.tasks.rank import candidate_frame, rank_candidates
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.sources.records import (
    RecordFailure,
    SourceSnapshot,
    StructureRecord,
)
from matscreen.tasks.spec import CriterionSpec, SplitSpec
from matscreen.tasks.split import choose_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

#: Share of a release's records whose content changes in the next release, and new ones.
CHURN, GROWTH = 0.5, 0.05
RELEASES = 6
#: The campaign runs, oldest first: (release of the main source or None, campaign variant).
#: Variants 2-5 screen the local file alone; variant 0 is re-run at every release, and
#: variant 1, a second campaign, at the last two.
RUNS: tuple[tuple[int | None, int], ...] = (
    *((None, variant) for variant in range(2, 6)),
    *((release, 0) for release in range(RELEASES - 2)),
    (RELEASES - 2, 0),
    (RELEASES - 2, 1),
    (RELEASES - 1, 0),
    (RELEASES - 1, 1),
)
TEST_FRACTION, SEED = 0.2, 7
FEATURES = [f"feature_{i}" for i in range(8)]
TARGETS = ("heat_of_formation", "band_gap")
SOFTWARE = {"matscreen": "0.1.0", "benchmark": "provenance"}
ELEMENTS = ("Sr", "Ba", "Ca", "La", "Ti", "Zr", "Nb", "Ta", "Mn", "Fe")


@dataclass(frozen=True)
class Shape:
    """How many records the first release holds and how many the file source holds."""

    first_release: int
    file_records: int

    @classmethod
    def for_entities(cls, entities: int) -> Shape:
        """A shape whose catalog holds a little over ``entities`` entities."""
        file_records = max(200, entities // 40)
        factor = 1 + (RELEASES - 1) * (CHURN + GROWTH)
        return cls(int((entities * 1.02 - file_records) / factor) + 1, file_records)


def structure(n: int) -> dict[str, Any]:
    """A cubic ABO3 perovskite in pymatgen's dictionary form, its lattice set by ``n``."""
    a = round(3.8 + (n % 997) / 2000, 6)
    species = (ELEMENTS[n % 4], ELEMENTS[4 + n % 6], "O", "O", "O")
    coords = ([0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5])
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": [[a, 0.0, 0.0], [0.0, a, 0.0], [0.0, 0.0, a]], "pbc": [True] * 3},
        "properties": {},
        "sites": [
            {"species": [{"element": el, "occu": 1}], "abc": abc, "label": el, "properties": {}}
            for el, abc in zip(species, coords, strict=True)
        ],
    }


@dataclass(frozen=True)
class Read:
    """One read of a source, as the campaign's ingest step records it."""

    snapshot: SourceSnapshot
    records: list[tuple[StructureRecord, Entity]]
    failures: list[Entity]


class History:
    """The content of every release of the main source and of the file source.

    A record's entity is built once per content and reused by every read that returns the
    same content, as the catalog itself would find it by its id.
    """

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self._entities: dict[tuple[str, int, int, str | None], tuple[StructureRecord, Entity]] = {}
        rng = np.random.default_rng(1)
        # versions[n] is the content version of record n in a release
        versions = np.zeros(shape.first_release, dtype=int)
        self.releases: list[np.ndarray] = [versions.copy()]
        for _ in range(1, RELEASES):
            versions = versions + (rng.random(len(versions)) < CHURN)
            versions = np.concatenate([versions, np.zeros(int(len(versions) * GROWTH), int)])
            self.releases.append(versions.copy())

    def record(
        self, source: str, number: int, version: int, duplicate_of: str | None = None
    ) -> tuple[StructureRecord, Entity]:
        key = (source, number, version, duplicate_of)
        if key not in self._entities:
            rng = np.random.default_rng(number * 1000 + version)
            record = StructureRecord(
                source=source,
                source_id=str(number),
                row=number + 1,
                formula=f"{ELEMENTS[number % 4]}{ELEMENTS[4 + number % 6]}O3",
                structure={} if duplicate_of else structure(number + 7919 * version),
                properties={
                    "heat_of_formation": round(float(rng.normal(0.3, 0.3)), 6),
                    "band_gap": round(float(rng.gamma(2, 1)), 6),
                },
                units={"heat_of_formation": "eV", "band_gap": "eV"},
                extra={"spacegroup": "Pm-3m"},
                duplicate_of=duplicate_of,
            )
            entity = Entity.new("structure_record", record.id, asdict(record))
            self._entities[key] = (record, entity)
        return self._entities[key]

    def read_main(self, release: int) -> Read:
        versions = self.releases[release]
        records, failures = [], []
        for n, version in enumerate(versions):
            if n % 211 == 5:  # a few rows of every release cannot be read
                failure = RecordFailure(
                    "mp", str(n), n + 1, "ingest", f"release {release}: bad row"
                )
                failures.append(Entity.new("record_error", failure.id, asdict(failure)))
            else:
                records.append(self.record("mp", n, int(version)))
        snapshot = SourceSnapshot(
            source="mp",
            kind="mp",
            location="https://api.materialsproject.org/materials/summary",
            sha256=f"{release:064x}",
            size_bytes=len(versions) * 2000,
            n_rows=len(versions),
            retrieved_at=utc_now(),
            licence="CC-BY-4.0",
            citation=("Jain et al., APL Mater. 1, 011002 (2013)",),
            query={"chemsys": "*-*-O", "fields": ["structure", "band_gap"]},
            database_version=f"2025.{release + 1:02d}.01",
        )
        return Read(snapshot, records, failures)

    def read_file(self, main_ids: set[str]) -> Read:
        """The local file: every 10th of its records repeats a record of the main source."""
        records = []
        for n in range(self.shape.file_records):
            twin = f"mp:{n}" if n % 10 == 0 and f"mp:{n}" in main_ids else None
            records.append(self.record("cmr", 10_000_000 + n, 0, twin))
        snapshot = SourceSnapshot(
            source="cmr",
            kind="csv_cif",
            location="/data/perovskites_cmr/cubic_perovskites.csv",
            sha256="c" * 64,
            size_bytes=self.shape.file_records * 1000,
            n_rows=self.shape.file_records,
            retrieved_at=utc_now(),
            licence="MIT",
            citation=("Castelli et al., Energy Environ. Sci. 5, 9034 (2012)",),
        )
        return Read(snapshot, records, [])


def task_run(name: str) -> RunInfo:
    now = utc_now()
    return RunInfo(name, now, now, "bench-host", os.getpid(), str(uuid.uuid4()))


def ingest(catalog: Catalog, run_id: str, read: Read, record_ids: dict[str, str]) -> str:
    """Write one read as :meth:`CampaignRecorder.ingest` does (same entities, same edges),
    with the record entities built once per content instead of once per read.

    Adds the read's ``{record id: entity id}`` to ``record_ids`` (which holds those of the
    run's earlier reads) and returns the snapshot's entity id.
    """
    attributes = asdict(read.snapshot)
    retrieved_at = attributes.pop("retrieved_at")
    snapshot = Entity.new("source_snapshot", read.snapshot.source, attributes)
    entities = [entity for _, entity in read.records]
    ids = {**record_ids, **{e.name: e.id for e in entities}}
    derived = [Edge("wasDerivedFrom", e.id, snapshot.id) for e in entities + read.failures]
    derived += [
        Edge("alternateOf", entity.id, ids[record.duplicate_of])
        for record, entity in read.records
        if record.duplicate_of is not None
    ]
    run = task_run("read_source")
    activity = Activity(
        id=run.task_run_id or "",
        kind="task_run",
        name=run.name,
        started_at=run.started_at,
        ended_at=run.ended_at,
        status="completed",
        prefect_run_id=run.task_run_id,
        parent_id=run_id,
        parameters={"source": read.snapshot.source, "retrieved_at": retrieved_at},
        host=run.host,
        software=SOFTWARE,
    )
    catalog.record_step(activity, [snapshot, *entities, *read.failures], derived=derived)
    record_ids.update({e.name: e.id for e in entities})
    return snapshot.id


def record_run(
    catalog: Catalog,
    artifacts: ArtifactStore,
    history: History,
    release: int | None,
    variant: int,
) -> str:
    """Write one campaign run (of the main source's ``release`` and the file, or of the
    file alone); return its run id."""
    run_id = str(uuid.uuid4())
    recorder = CampaignRecorder(
        catalog,
        artifacts,
        run_id,
        "screen-candidates",
        {"spec_path": f"/specs/oxides-{variant}.yaml"},
        SOFTWARE,
        "0" * 40,
        "bench",
        "bench-host",
    )
    criteria = [
        CriterionSpec(property="heat_of_formation", max=0.2 + 0.05 * variant, unit="eV"),
        CriterionSpec(property="band_gap", min=1.1, max=1.7 + 0.2 * variant, unit="eV"),
    ]
    spec = {
        "name": f"oxide-screen-{variant}",
        "criteria": [c.model_dump() for c in criteria],
        "models": [{"target": t, "params": {"max_depth": 4 + variant}} for t in TARGETS],
    }
    with recorder.running():
        recorder.spec(spec, f"{variant:064x}", task_run("load_spec"))
        record_ids: dict[str, str] = {}
        reads = [] if release is None else [history.read_main(release)]
        snapshot_ids = [ingest(catalog, run_id, read, record_ids) for read in reads]
        # The file is read second: its records that repeat the main source's are linked
        reads.append(history.read_file(set(record_ids)))
        snapshot_ids.append(ingest(catalog, run_id, reads[-1], record_ids))

        kept = [r for read in reads for r, _ in read.records if r.duplicate_of is None]
        ids = sorted(r.id for r in kept)
        split = choose_split(ids, SplitSpec(test_fraction=TEST_FRACTION, seed=SEED))
        train, test = split.train_ids, split.test_ids
        split_id = recorder.split(split, task_run("choose_split"), snapshot_ids)

        unfeaturizable = set(ids[3::997])
        featurized = [i for i in ids if i not in unfeaturizable]
        values = np.random.default_rng(len(featurized)).random((len(featurized), len(FEATURES)))
        frame = pd.DataFrame(values, index=pd.Index(featurized, name="id"), columns=FEATURES)
        table = SimpleNamespace(frame=frame, failures=dict.fromkeys(unfeaturizable, "no data"))
        failures = [
            RecordFailure(r.source, r.source_id, r.row, "featurize", "no data")
            for r in kept
            if r.id in unfeaturizable
        ]
        batches = [task_run("featurize_packed") for _ in range(max(1, len(ids) // 2000))]
        config = {"preset": "fast", "featurizers": FEATURES}
        features_id = recorder.features(table, batches, config, [], record_ids, failures)

        labels = {r.id: r.properties for r in kept}
        held_out = [i for i in test if i not in unfeaturizable]
        fitted = [i for i in train if i not in unfeaturizable]
        predictions = {}
        stored = []
        rng = np.random.default_rng([variant, RELEASES if release is None else release])
        for target in TARGETS:
            truth = [labels[i][target] for i in held_out]
            predicted = list(np.asarray(truth) + rng.normal(0, 0.2, len(truth)))
            predictions[target] = predicted
            trained = SimpleNamespace(
                target=target,
                algorithm="xgboost",
                params={"max_depth": 4 + variant},
                feature_labels=FEATURES,
                clip_min=None,
                versions={"xgboost": "3.2.0"},
                train_ids=fitted,
                train_label_mean=float(np.mean([labels[i][target] for i in fitted])),
                model_json=json.dumps([target, release, variant]).encode(),
            )
            held = SimpleNamespace(
                target=target, ids=held_out, y_true=truth, y_pred=predicted, baseline=0.0
            )
            metrics = {"mae": float(np.mean(np.abs(np.subtract(truth, predicted))))}
            stored.append(
                recorder.model(
                    trained, held, metrics, task_run("fit_and_evaluate"), split_id, features_id
                )
            )
        formulas = {r.id: r.formula for r in kept}
        candidates = candidate_frame(held_out, [formulas[i] for i in held_out], predictions)
        ranked = rank_candidates(candidates, criteria)
        ranking_id = recorder.ranking(
            ranked,
            task_run("rank_candidates"),
            [c.model_dump() for c in criteria],
            [p for _, p in stored],
        )
        files = {"ranking.csv": {"sha256": "0" * 64, "bytes": 1}}
        recorder.report(files, task_run("write_outputs"), ranking_id, [m for m, _ in stored])
    return run_id


def counts(catalog: Catalog) -> tuple[int, int]:
    with catalog.engine.connect() as conn:
        entities = conn.execute(select(func.count()).select_from(schema.entities)).scalar()
        edges = conn.execute(select(func.count()).select_from(schema.edges)).scalar()
    return int(entities or 0), int(edges or 0)


def build(catalog: Catalog, artifacts: ArtifactStore, history: History) -> list[str]:
    """Record every run of :data:`RUNS`; return their ids in the same order."""
    return [record_run(catalog, artifacts, history, release, variant) for release, variant in RUNS]


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def queries(
    catalog: Catalog, artifacts: ArtifactStore, runs: list[str]
) -> dict[str, Callable[[], object]]:
    """The queries to time, on the latest runs and a recent release."""
    run_of = dict(zip(RUNS, runs, strict=True))
    latest = runs[-1]
    recent, last = run_of[(RELEASES - 2, 0)], run_of[(RELEASES - 1, 0)]
    top = find_candidates(catalog, artifacts, run_id=latest, every=True)[0].id
    version = f"2025.{RELEASES - 1:02d}.01"  # release RELEASES - 2, read by two runs
    snapshots = catalog.find_entities("source_snapshot")
    release = next(s for s in snapshots if s.attributes["database_version"] == version)
    file = next(s for s in snapshots if s.name == "cmr")
    model = catalog.run_entities(latest, ["model"])[0]
    return {
        "lineage(top candidate)": lambda: lineage(catalog, artifacts, top, run_id=latest),
        "impact(release snapshot)": lambda: impact(catalog, release.id),
        "impact(file snapshot)": lambda: impact(catalog, file.id),
        "impact(model)": lambda: impact(catalog, model.id),
        "find_runs(database_version)": lambda: find_runs(catalog, database_version=version),
        "diff_runs(successive releases)": lambda: diff_runs(catalog, artifacts, recent, last),
        "find_candidates(run)": lambda: find_candidates(catalog, artifacts, run_id=latest),
        "show(record name)": lambda: show(catalog, top),
    }


def describe(catalog: Catalog) -> None:
    """Print what the snapshot impacts reach, as a check that the catalog is as intended."""
    snapshots = catalog.find_entities("source_snapshot")
    for snapshot in sorted(snapshots, key=lambda s: (s.name, s.attributes["database_version"])):
        reached = impact(catalog, snapshot.id)
        version = snapshot.attributes["database_version"] or "file"
        print(
            f"  impact of {snapshot.name} {version}: {len(reached.rankings)} rankings, "
            f"{len(reached.runs)} runs, {reached.per_record}"
        )


@contextmanager
def backend_url(backend: str, folder: Path) -> Iterator[str]:
    """A URL of an empty catalog database on ``backend``, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'catalog.sqlite'}"
        return
    from pg_server import postgres_server

    server = folder / "postgresql"
    server.mkdir()
    os.chmod(folder, 0o755)
    with postgres_server(server) as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )
    history = History(Shape.for_entities(args.entities))
    rows = []
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="matscreen-provenance-") as scratch:
            folder = Path(scratch)
            with backend_url(backend, folder) as url, Catalog(url) as catalog:
                if backend == "postgresql":
                    with catalog.engine.connect() as conn:
                        print(f"  {conn.exec_driver_sql('SELECT version()').scalar()}")
                artifacts = ArtifactStore(folder / "artifacts")
                start = time.perf_counter()
                runs = build(catalog, artifacts, history)
                n_entities, n_edges = counts(catalog)
                print(
                    f"{backend}: {n_entities:,} entities, {n_edges:,} edges, {len(runs)} runs, "
                    f"built in {time.perf_counter() - start:.0f} s"
                )
                describe(catalog)
                for name, fn in queries(catalog, artifacts, runs).items():
                    rows.append((backend, n_entities, n_edges, name, timed(fn, args.repeats)))

    print(
        f"\n{'backend':<11}{'entities':>10}{'edges':>11}  {'query':<31}{'median ms':>10}"
        f"{'max ms':>9}   ({args.repeats} calls after a warm-up)"
    )
    for backend, n_entities, n_edges, name, times in rows:
        print(
            f"{backend:<11}{n_entities:>10,}{n_edges:>11,}  {name:<31}"
            f"{statistics.median(times):>10.1f}{max(times):>9.1f}"
        )


if __name__ == "__main__":
    main()
