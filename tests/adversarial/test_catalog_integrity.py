"""The provenance tables are append-only in the database, an activity ends once, a run whose
process died shows as crashed, and a catalog of the previous schema is upgraded in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from support.runs import dead_pid, running_run

from matscreen.catalog import Catalog
from matscreen.catalog.nodes import Activity, Entity
from matscreen.catalog.queries import find_runs
from matscreen.tasks.errors import ProvenanceRuleError
from matscreen.tasks.runinfo import utc_now


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE nodes SET node_type = 'agent'",
        "DELETE FROM nodes WHERE id = :entity",
        "UPDATE entities SET name = 'other'",
        "DELETE FROM entities",
        "UPDATE agents SET name = 'mallory'",
        "DELETE FROM agents",
        "UPDATE edges SET relation = 'used'",
        "DELETE FROM edges",
        "DELETE FROM activities WHERE id = 'run-1'",
        "UPDATE activities SET status = 'failed' WHERE id = 'run-done'",
        "UPDATE activities SET name = 'other' WHERE id = 'run-1'",
        "UPDATE activities SET parameters = '{}', status = 'completed' WHERE id = 'run-1'",
    ],
)
def test_the_database_refuses_changes_to_provenance(catalog: Catalog, statement: str) -> None:
    user = catalog.ensure_agent("person", "alice", {})
    catalog.start_activity(running_run("run-1"), agents=[user])
    catalog.start_activity(running_run("run-done"), agents=[user])
    catalog.finish_activity("run-done", "completed")
    entity = Entity.new("campaign_spec", "demo", {"spec": {}, "sha256": "0" * 64})
    catalog.record_step(
        Activity(
            id="step-1",
            kind="step",
            name="spec",
            started_at=utc_now(),
            ended_at=utc_now(),
            status="completed",
            parent_id="run-1",
        ),
        [entity],
    )
    with pytest.raises(DatabaseError, match="immutable|end once"):
        with catalog.engine.begin() as conn:
            conn.execute(text(statement), {"entity": entity.id} if ":entity" in statement else {})
    # Nothing changed: the run is still listed, running, with its name.
    assert [(r.id, r.status) for r in find_runs(catalog)] == [
        ("run-1", "running"),
        ("run-done", "completed"),
    ]


def test_an_activity_ends_once(catalog: Catalog) -> None:
    catalog.start_activity(running_run("run-1"))
    catalog.finish_activity("run-1", "interrupted")
    with pytest.raises(ProvenanceRuleError, match="run-1 has ended already \\(interrupted\\)"):
        catalog.finish_activity("run-1", "completed")
    with pytest.raises(ProvenanceRuleError, match="not a final status"):
        catalog.finish_activity("run-1", "running")
    assert catalog.get_activity("run-1").status == "interrupted"


def test_a_run_whose_process_died_is_crashed(catalog: Catalog) -> None:
    catalog.start_activity(running_run("dead", pid=dead_pid()))
    catalog.start_activity(running_run("alive"))  # this process
    catalog.start_activity(running_run("elsewhere", pid=dead_pid(), host="another-host"))
    shown = {r.id: r.status for r in find_runs(catalog)}
    assert shown == {"dead": "crashed", "alive": "running", "elsewhere": "running"}
    assert catalog.get_activity("dead").status == "crashed"

    assert catalog.mark_crashed() == ["dead"]
    with catalog.engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, status FROM activities")).all())
    assert stored == {"dead": "crashed", "alive": "running", "elsewhere": "running"}
    assert catalog.mark_crashed() == []


def _as_version_1(path: Path) -> None:
    """Turn a new SQLite catalog into one as version 1 wrote it (old status CHECK, no
    triggers on nodes, agents and activities)."""
    con = sqlite3.connect(path)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        if not name.startswith(("entities_", "edges_")):
            con.execute(f"DROP TRIGGER {name}")
    (create,) = con.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'activities'"
    ).fetchone()
    old = create.replace(", 'interrupted', 'crashed'", "").replace(
        "CREATE TABLE activities", "CREATE TABLE activities_v1"
    )
    assert "'running', 'completed', 'failed')" in old
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute(old)
    con.execute("INSERT INTO activities_v1 SELECT * FROM activities")
    con.execute("DROP TABLE activities")
    con.execute("ALTER TABLE activities_v1 RENAME TO activities")
    con.execute("UPDATE catalog_info SET value = '1' WHERE key = 'schema'")
    con.commit()
    con.close()


def test_a_version_1_catalog_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    url = f"sqlite:///{path}"
    with Catalog(url) as catalog:
        catalog.start_activity(running_run("old-run", pid=dead_pid()))
        catalog.start_activity(running_run("old-done"))
        catalog.finish_activity("old-done", "completed")
    _as_version_1(path)
    con = sqlite3.connect(path)
    con.execute("UPDATE nodes SET node_type = node_type")  # no trigger in version 1
    con.close()

    with Catalog(url) as catalog:  # upgrades
        assert catalog.mark_crashed() == ["old-run"]  # a status version 1 could not hold
        assert {r.id: r.status for r in find_runs(catalog)} == {
            "old-run": "crashed",
            "old-done": "completed",
        }
        with pytest.raises(DatabaseError, match="nodes are immutable"):
            with catalog.engine.begin() as conn:
                conn.execute(text("DELETE FROM nodes"))
        # The connection that upgraded is back in the pool with its transactions: a step
        # refused half-way leaves nothing, not even its activity.
        step = Activity("after-upgrade", "step", "bad", utc_now(), utc_now(), "completed")
        kept = Entity.new("model", "m", {"target": "band_gap"})
        with pytest.raises(ProvenanceRuleError, match="is not stored"):
            catalog.record_step(step, [kept], used=["f" * 64])
        with catalog.engine.connect() as conn:
            assert (
                conn.execute(text("SELECT count(*) FROM nodes WHERE id = 'after-upgrade'")).scalar()
                == 0
            )
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM catalog_info").fetchone() == ("2",)
    assert con.execute("PRAGMA foreign_key_check").fetchall() == []
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
