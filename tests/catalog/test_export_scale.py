"""A run's crate is read without walking its records: :func:`run_subgraph` without
records reads no record row, and other runs in the catalog add little to its work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from matscreen.catalog.export.subgraph import run_subgraph
from matscreen.catalog.nodes import Activity, Edge, Entity
from matscreen.catalog.store import Catalog
from matscreen.tasks.runinfo import utc_now


def _run_with_records(catalog: Catalog, name: str, n: int, tables: int = 1, first: int = 0) -> str:
    """A run that reads records ``first`` to ``first + n - 1`` from a snapshot of its own and
    makes ``tables`` feature tables of them (run-level entities); runs share records."""
    run = Activity(name, "flow_run", "screen", utc_now())
    catalog.start_activity(run)
    snapshot = Entity.new("source_snapshot", "files", {"run": name, "rows": n})
    ids = range(first, first + n)
    records = [Entity.new("structure_record", f"files:{i}", {"i": i}) for i in ids]
    catalog.record_step(
        Activity(
            f"{name}-ingest", "step", "ingest", utc_now(), utc_now(), "completed", parent_id=run.id
        ),
        generated=[snapshot, *records],
        derived=[Edge("wasDerivedFrom", r.id, snapshot.id) for r in records],
    )
    for t in range(tables):
        table = Entity.new("feature_table", "features", {"run": name, "table": t})
        catalog.record_step(
            Activity(
                f"{name}-featurize-{t}",
                "step",
                "featurize",
                utc_now(),
                utc_now(),
                "completed",
                parent_id=run.id,
            ),
            generated=[table],
            used=[r.id for r in records],
            derived=[Edge("wasDerivedFrom", table.id, r.id) for r in records],
        )
    catalog.finish_activity(run.id, "completed")
    return run.id


def _vm_steps(catalog: Catalog, run_id: str, records: bool) -> tuple[int, int]:
    """SQLite virtual-machine instructions (in hundreds) spent reading the run, and its
    number of entities."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def watch(conn: Any, *_: Any) -> None:
        conn.connection.driver_connection.set_progress_handler(count, 100)

    event.listen(catalog.engine, "before_cursor_execute", watch)
    try:
        graph = run_subgraph(catalog, run_id, records=records)
    finally:
        event.remove(catalog.engine, "before_cursor_execute", watch)
    return steps[0], len(graph.entities)


def test_a_runs_crate_reads_neither_its_records_nor_the_other_runs(tmp_path: Path) -> None:
    costs = {}
    for others in (0, 40):
        with Catalog(f"sqlite:///{tmp_path / f'catalog{others}.sqlite'}") as catalog:
            # Other runs of the campaign: 50 run-level entities each, 2,040 in all.
            for k in range(others):
                _run_with_records(catalog, f"other-{k}", 5, tables=50, first=10_000 + 5 * k)
            run_id = _run_with_records(catalog, "run", 3000)
            costs[others] = {r: _vm_steps(catalog, run_id, r) for r in (True, False)}
    # The run's entities: the snapshot and the table, plus the records when asked for.
    assert [costs[n][False][1] for n in costs] == [2, 2]
    assert [costs[n][True][1] for n in costs] == [3002, 3002]
    # Without the records the walk reads no record row (under half the full read's work),
    # and the catalog's other runs add little to it.
    assert 0 < costs[0][False][0] < costs[0][True][0] / 2
    assert costs[40][False][0] < 1.5 * costs[0][False][0]


def test_an_entity_reached_only_through_a_record_is_left_out_without_records(
    tmp_path: Path,
) -> None:
    """The second run reads the first run's records again from a snapshot of its own: the
    first snapshot is upstream of its records only, so the crate's read leaves it out."""
    with Catalog(f"sqlite:///{tmp_path / 'catalog.sqlite'}") as catalog:
        _run_with_records(catalog, "first", 20)
        second = _run_with_records(catalog, "second", 20)
        full = run_subgraph(catalog, second)
        light = run_subgraph(catalog, second, records=False)
    snapshots = {e.attributes["run"]: e.id for e in full.of_kind("source_snapshot")}
    assert set(snapshots) == {"first", "second"}
    records = {e.id for e in full.of_kind("structure_record")}
    assert len(records) == 20 and records <= full.direct
    assert set(light.entities) == set(full.entities) - records - {snapshots["first"]}
    assert snapshots["second"] in light.direct
