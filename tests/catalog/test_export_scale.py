"""A run's crate is read without walking its records: the work of :func:`run_subgraph`
without records does not grow with the number of records the run read."""

from __future__ import annotations

from pathlib import Path

from matscreen.catalog.export.subgraph import run_subgraph
from matscreen.catalog.nodes import Activity, Edge, Entity
from matscreen.catalog.store import Catalog
from matscreen.tasks.runinfo import utc_now


def _run_with_records(catalog: Catalog, n: int) -> str:
    """A run that reads ``n`` records from one snapshot and makes one feature table of them."""
    run = Activity(f"run-{n}", "flow_run", "screen", utc_now())
    catalog.start_activity(run)
    snapshot = Entity.new("source_snapshot", "files", {"rows": n})
    records = [Entity.new("structure_record", f"files:{i}", {"i": i}) for i in range(n)]
    ingest = Activity(
        f"ingest-{n}", "step", "ingest", utc_now(), utc_now(), "completed", parent_id=run.id
    )
    catalog.record_step(
        ingest,
        generated=[snapshot, *records],
        derived=[Edge("wasDerivedFrom", r.id, snapshot.id) for r in records],
    )
    table = Entity.new("feature_table", "features", {"rows": n})
    featurize = Activity(
        f"featurize-{n}", "step", "featurize", utc_now(), utc_now(), "completed", parent_id=run.id
    )
    catalog.record_step(
        featurize,
        generated=[table],
        used=[r.id for r in records],
        derived=[Edge("wasDerivedFrom", table.id, r.id) for r in records],
    )
    catalog.finish_activity(run.id, "completed")
    return run.id


def _vm_steps(catalog: Catalog, run_id: str, records: bool) -> tuple[int, int]:
    """SQLite virtual-machine instructions (in hundreds) spent reading the run, and its entities."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    with catalog.engine.connect() as conn:
        raw = conn.connection.driver_connection
    raw.set_progress_handler(count, 100)
    try:
        graph = run_subgraph(catalog, run_id, records=records)
    finally:
        raw.set_progress_handler(None, 100)
    return steps[0], len(graph.entities)


def test_reading_a_run_without_records_costs_the_same_for_ten_times_the_records(
    tmp_path: Path,
) -> None:
    costs = {}
    for n in (300, 3000):
        with Catalog(f"sqlite:///{tmp_path / f'catalog{n}.sqlite'}") as catalog:
            run_id = _run_with_records(catalog, n)
            costs[n] = {records: _vm_steps(catalog, run_id, records) for records in (True, False)}
    # The run's entities: the snapshot and the table, plus the records when asked for.
    assert [costs[n][False][1] for n in costs] == [2, 2]
    assert [costs[n][True][1] for n in costs] == [302, 3002]
    # The full read grows with the records (the measure sees the work); the light one not.
    assert costs[3000][True][0] > 5 * costs[300][True][0] > 0
    assert costs[3000][False][0] < 1.5 * costs[300][False][0]
