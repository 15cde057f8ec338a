"""Upgrading a catalog written by an older matscreen to this schema version.

Version 1 → 2: the activity statuses ``interrupted`` and ``crashed`` (the status CHECK
constraint changes) and the append-only triggers on nodes, agents and activities. The
upgrade runs in one transaction, once: a process that opens the catalog while another one
upgrades it waits for the lock and then finds it upgraded.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.schema import CreateIndex, CreateTable

from matscreen.catalog import schema
from matscreen.catalog.rules import ACTIVITY_STATUSES, in_check_sql


def _version(cursor) -> str:
    cursor.execute("SELECT value FROM catalog_info WHERE key = 'schema'")
    return str(cursor.fetchone()[0])


def upgrade(engine: Engine) -> None:
    """Upgrade a version-1 catalog to :data:`schema.SCHEMA_VERSION` (2)."""
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine)
    else:
        _upgrade_postgresql(engine)


def _upgrade_sqlite(engine: Engine) -> None:
    # SQLite cannot change a CHECK constraint: the activities table is rebuilt (create the
    # new table, copy, drop the old, rename), with foreign keys off for the swap.
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        assert connection is not None  # a raw connection that is open has its driver's
        previous = connection.isolation_level
        connection.isolation_level = None  # explicit transaction below
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys = OFF")
        cursor.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            if _version(cursor) == "1":
                create = str(CreateTable(schema.activities).compile(dialect=engine.dialect))
                cursor.execute(
                    create.replace("CREATE TABLE activities", "CREATE TABLE activities_v2", 1)
                )
                columns = ", ".join(c.name for c in schema.activities.columns)
                cursor.execute(
                    f"INSERT INTO activities_v2 ({columns}) SELECT {columns} FROM activities"
                )
                cursor.execute("DROP TABLE activities")
                cursor.execute("ALTER TABLE activities_v2 RENAME TO activities")
                for index in schema.activities.indexes:
                    cursor.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
                for statement in schema.trigger_sql("sqlite"):
                    cursor.execute(statement)
                cursor.execute(
                    "UPDATE catalog_info SET value = ? WHERE key = 'schema'",
                    (str(schema.SCHEMA_VERSION),),
                )
            cursor.execute("COMMIT")
            committed = True
        finally:
            if not committed:
                cursor.execute("ROLLBACK")
            cursor.execute("PRAGMA foreign_keys = ON")
            # The connection returns to the pool as it came: transactions begun implicitly.
            connection.isolation_level = previous
    except BaseException:
        raw.invalidate()  # never pooled in a state the steps above may have left
        raise
    finally:
        raw.close()


def _upgrade_postgresql(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("LOCK TABLE catalog_info IN EXCLUSIVE MODE"))
        version = conn.execute(text("SELECT value FROM catalog_info WHERE key = 'schema'")).scalar()
        if version != "1":
            return
        conn.execute(text("ALTER TABLE activities DROP CONSTRAINT ck_activities_status"))
        conn.execute(
            text(
                "ALTER TABLE activities ADD CONSTRAINT ck_activities_status "
                f"CHECK ({in_check_sql('status', ACTIVITY_STATUSES)})"
            )
        )
        for statement in schema.trigger_sql("postgresql"):
            conn.exec_driver_sql(statement)
        conn.execute(
            text("UPDATE catalog_info SET value = :v WHERE key = 'schema'"),
            {"v": str(schema.SCHEMA_VERSION)},
        )
