"""Database schema of the catalog (SQLAlchemy Core; SQLite and PostgreSQL).

Every node (entity, activity, agent) has a row in ``nodes`` carrying its type, so that an
edge's foreign keys check both that its ends exist and that they are of the type the
relation demands. The provenance tables are append-only: triggers refuse every update and
delete of nodes, entities, edges and agents; an activity is never deleted and is updated
once, from ``running`` to its final status and end time.

Schema version 2 added the statuses ``interrupted`` and ``crashed`` and the triggers on
nodes, agents and activities; :mod:`matscreen.catalog.migrate` upgrades a version-1 catalog.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    Engine,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)

from matscreen.catalog.rules import (
    ACTIVITY_KINDS,
    ACTIVITY_STATUSES,
    AGENT_KINDS,
    ENTITY_KINDS,
    NODE_TYPES,
    in_check_sql,
    relation_check_sql,
)

SCHEMA_VERSION = 2

metadata = MetaData()

catalog_info = Table(
    "catalog_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("node_type", String(16), nullable=False),
    UniqueConstraint("id", "node_type", name="uq_nodes_id_type"),
    CheckConstraint(in_check_sql("node_type", NODE_TYPES), name="ck_nodes_type"),
)

entities = Table(
    "entities",
    metadata,
    Column("id", String(64), ForeignKey("nodes.id"), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(512), nullable=False),
    Column("attributes", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
    CheckConstraint(in_check_sql("kind", ENTITY_KINDS), name="ck_entities_kind"),
    Index("ix_entities_kind_name", "kind", "name"),
)

activities = Table(
    "activities",
    metadata,
    Column("id", String(64), ForeignKey("nodes.id"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("prefect_run_id", String(64)),
    Column("parent_id", String(64), ForeignKey("activities.id")),
    Column("parameters", Text, nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("ended_at", String(40)),
    Column("status", String(16), nullable=False),
    Column("host", String(256), nullable=False),
    Column("software", Text, nullable=False),
    Column("git_commit", String(64)),
    CheckConstraint(in_check_sql("kind", ACTIVITY_KINDS), name="ck_activities_kind"),
    CheckConstraint(in_check_sql("status", ACTIVITY_STATUSES), name="ck_activities_status"),
    Index("ix_activities_prefect_run_id", "prefect_run_id"),
    Index("ix_activities_parent_id", "parent_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(64), ForeignKey("nodes.id"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(256), nullable=False),
    Column("attributes", Text, nullable=False),
    CheckConstraint(in_check_sql("kind", AGENT_KINDS), name="ck_agents_kind"),
)

edges = Table(
    "edges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("relation", String(32), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("object_type", String(16), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    ForeignKeyConstraint(
        ["subject_id", "subject_type"], ["nodes.id", "nodes.node_type"], name="fk_edges_subject"
    ),
    ForeignKeyConstraint(
        ["object_id", "object_type"], ["nodes.id", "nodes.node_type"], name="fk_edges_object"
    ),
    UniqueConstraint("relation", "subject_id", "object_id", name="uq_edges"),
    CheckConstraint(relation_check_sql(), name="ck_edges_relation"),
    Index("ix_edges_subject", "subject_id", "relation"),
    # Walks against the edges' direction (what was derived from an entity, which activities
    # used it) look edges up by object and relation and read the subject. With the subject
    # in it, this index answers those lookups alone, and SQLite, which keeps no statistics,
    # chooses it over the unique index (relation, subject_id, object_id), through which it
    # would scan every edge of the relation: the impact of a snapshot of 9,000 records took
    # 60 s that way and takes 0.4 s this way. It extends, and replaces, ix_edges_object
    # (object_id, relation).
    Index("ix_edges_object_subject", "object_id", "relation", "subject_id"),
)

#: Tables whose rows never change once written.
APPEND_ONLY = ("nodes", "entities", "agents", "edges")

#: Columns of an activity fixed when it starts (an update may set only status and ended_at).
_FIXED_ACTIVITY_COLUMNS = tuple(
    c.name for c in activities.columns if c.name not in ("status", "ended_at")
)

_IMMUTABLE = "are immutable: record a new one instead"
_ENDS_ONCE = "activities end once: only a running activity gets its final status and end time"


def trigger_sql(dialect: str) -> list[str]:
    """The statements that create the append-only triggers, for ``sqlite`` or ``postgresql``.

    Used when a catalog is created and by the upgrade of an older one.
    """
    changed = " OR ".join(
        f"NEW.{c} IS NOT OLD.{c}" if dialect == "sqlite" else f"NEW.{c} IS DISTINCT FROM OLD.{c}"
        for c in _FIXED_ACTIVITY_COLUMNS
    )
    not_an_end = f"OLD.status <> 'running' OR NEW.status = 'running' OR {changed}"
    if dialect == "sqlite":
        statements = [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} {_IMMUTABLE}'); END"
            for table in APPEND_ONLY
            for op in ("UPDATE", "DELETE")
        ]
        return statements + [
            "CREATE TRIGGER IF NOT EXISTS activities_no_delete BEFORE DELETE ON activities "
            f"BEGIN SELECT RAISE(ABORT, 'activities {_IMMUTABLE}'); END",
            "CREATE TRIGGER IF NOT EXISTS activities_end_once BEFORE UPDATE ON activities "
            f"WHEN {not_an_end} BEGIN SELECT RAISE(ABORT, '{_ENDS_ONCE}'); END",
        ]
    statements = [
        "CREATE OR REPLACE FUNCTION matscreen_refuse_change() RETURNS trigger AS $$ "
        f"BEGIN RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' {_IMMUTABLE}'; "
        "END; $$ LANGUAGE plpgsql",
        "CREATE OR REPLACE FUNCTION matscreen_activity_ends() RETURNS trigger AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' OR {not_an_end} THEN RAISE EXCEPTION '{_ENDS_ONCE}'; END IF; "
        "RETURN NEW; END; $$ LANGUAGE plpgsql",
    ]
    for table in APPEND_ONLY:
        statements.append(f"DROP TRIGGER IF EXISTS {table}_immutable ON {table}")
        statements.append(
            f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION matscreen_refuse_change()"
        )
    return statements + [
        "DROP TRIGGER IF EXISTS activities_end_once ON activities",
        "CREATE TRIGGER activities_end_once BEFORE UPDATE OR DELETE ON activities "
        "FOR EACH ROW EXECUTE FUNCTION matscreen_activity_ends()",
    ]


@event.listens_for(metadata, "after_create")
def _create_triggers(_target: MetaData, connection: Connection, tables=(), **_: object) -> None:
    """Create the triggers with the tables, once, when a catalog is created."""
    if any(table.name == "edges" for table in tables) and connection.dialect.name in (
        "sqlite",
        "postgresql",
    ):
        for statement in trigger_sql(connection.dialect.name):
            connection.exec_driver_sql(statement)


def enable_sqlite_foreign_keys(engine: Engine, wal: bool = True) -> None:
    """Make every SQLite connection of ``engine`` enforce foreign keys and wait on locks
    (and use write-ahead logging, unless ``wal`` is off: a read-only connection)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.close()


def sqlite_read_only_url(database: Path) -> str | None:
    """A read-only URL for an existing SQLite file this process cannot write, else None.

    A database whose folder cannot be written either, and that has no write-ahead log
    pending, is opened ``immutable`` (SQLite then needs no lock or shared-memory file
    beside it, which it could not create there).
    """
    if not database.is_file():
        return None
    folder_writable = os.access(database.parent, os.W_OK)
    if folder_writable and os.access(database, os.W_OK):
        return None
    log = database.with_name(database.name + "-wal")
    immutable = not folder_writable and (not log.exists() or log.stat().st_size == 0)
    options = "mode=ro&uri=true" + ("&immutable=1" if immutable else "")
    return f"sqlite:///file:{quote(str(database.resolve()))}?{options}"
