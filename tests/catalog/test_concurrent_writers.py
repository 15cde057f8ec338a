"""Several processes writing the same provenance at once leave one consistent catalog.

Each writer process records campaign-like runs of the same real source (the same snapshot
and records, so every writer races to create the same entities), on SQLite and on
PostgreSQL. Afterwards every entity has exactly one generating activity, every other
writer's step is recorded as having used it, and every run is complete.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from matscreen.catalog import ArtifactStore, Catalog, schema
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import FilesSourceSpec, PropertySpec

WRITERS = 3
RUNS_PER_WRITER = 3


def _spec(data_dir: Path) -> FilesSourceSpec:
    return FilesSourceSpec(
        kind="files",
        name="mp2018",
        path=data_dir / "materials_project" / "mp2018_subset_100.jsonl",
        id_key="id",
        properties={"band_gap": PropertySpec(column="egap", unit="eV")},
        licence="CC-BY-4.0",
        citation=["De Breuck et al., npj Comput. Mater. 2021"],
    )


def _write(url: str, artifacts: str, data_dir: str, writer: int, start, errors) -> None:
    """One writer process: record a few runs of the same source as fast as it can."""
    try:
        result = read_source(_spec(Path(data_dir)))
        start.wait()
        with Catalog(url) as catalog:
            for i in range(RUNS_PER_WRITER):
                run_id = f"writer{writer}-run{i}"
                recorder = CampaignRecorder(
                    catalog,
                    ArtifactStore(Path(artifacts)),
                    run_id,
                    "ingest-structures",
                    {},
                    {"matscreen": "test"},
                    None,
                    "tester",
                    "host",
                )
                with recorder.running():
                    now = utc_now()
                    run = RunInfo("read_source", now, now, "host", 1)
                    recorder.ingest(result, run)
    except BaseException as exc:  # reported to the test, which fails with it
        errors.put(f"writer {writer}: {type(exc).__name__}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    with Catalog(url) as catalog:
        schema.metadata.drop_all(catalog.engine)


def test_concurrent_runs_leave_a_consistent_catalog(
    catalog_url: str, tmp_path: Path, data_dir: Path
) -> None:
    Catalog(catalog_url).close()  # create the schema once, as the first run would
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    writers = [
        context.Process(
            target=_write,
            args=(catalog_url, str(tmp_path / "artifacts"), str(data_dir), w, start, errors),
        )
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    start.set()
    for process in writers:
        process.join(timeout=300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in writers] == [0] * WRITERS

    expected_records = len(read_source(_spec(data_dir)).records)
    with Catalog(catalog_url) as catalog:
        entities = catalog.find_entities(kind="structure_record")
        assert len(entities) == expected_records
        assert len(catalog.find_entities(kind="source_snapshot")) == 1
        edges = schema.edges
        with catalog.engine.connect() as conn:
            generated = dict(
                conn.execute(
                    select(edges.c.subject_id, func.count())
                    .where(edges.c.relation == "wasGeneratedBy")
                    .group_by(edges.c.subject_id)
                ).all()
            )
            n_entities = conn.execute(select(func.count()).select_from(schema.entities)).scalar()
        # One generation per entity, whichever writer got there first.
        assert len(generated) == n_entities and set(generated.values()) == {1}
        runs = catalog.activities(kind="flow_run")
        assert len(runs) == WRITERS * RUNS_PER_WRITER
        assert {r.status for r in runs} == {"completed"}
        # Every ingest step either generated the snapshot or used it.
        snapshot = catalog.find_entities(kind="source_snapshot")[0]
        users = catalog.edges(relation="used", object_id=snapshot.id)
        makers = catalog.edges(relation="wasGeneratedBy", subject_id=snapshot.id)
        assert len(users) + len(makers) == WRITERS * RUNS_PER_WRITER


def _open_catalog(url: str, results: Any) -> None:
    try:
        with Catalog(url):
            results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_processes_opening_one_new_catalog_at_once_all_open_it(tmp_path: Path) -> None:
    # Each creates the tables it finds missing; the ones that lose the race see the tables
    # made and go on (before, one in about fifteen such starts failed).
    context = multiprocessing.get_context("spawn")
    for trial in range(8):
        url = f"sqlite:///{tmp_path / f'new{trial}' / 'catalog.sqlite'}"
        results = context.Queue()
        processes = [context.Process(target=_open_catalog, args=(url, results)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
        assert [results.get(timeout=5) for _ in processes] == ["ok"] * 4
