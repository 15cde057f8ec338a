"""The catalog over SQLAlchemy (SQLite file or PostgreSQL server): opening it, and writing.

Its records (entities, activities, edges) are in :mod:`~matscreen.catalog.nodes`, its
reads in :mod:`~matscreen.catalog.reads`. Writes happen only in the flow's driver process,
one transaction per recorded step, so a step's activity, its entities and their edges are
stored together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from matscreen.catalog import schema
from matscreen.catalog.liveness import has_died
from matscreen.catalog.nodes import Activity, Edge, Entity
from matscreen.catalog.reads import CHUNK, CatalogReads
from matscreen.catalog.rules import (
    ACTIVITY_STATUSES,
    AGENT_KINDS,
    RELATIONS,
    check_edge_ends,
)
from matscreen.tasks.errors import CatalogError, NotFoundError, ProvenanceRuleError
from matscreen.tasks.hashing import canonical_json, content_hash
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.secrets import mask_url

#: Tries at creating a new catalog's tables while other processes create them too.
_CREATE_ATTEMPTS = 10


class Catalog(CatalogReads):
    """The provenance store.

    Parameters
    ----------
    url
        Any SQLAlchemy URL; a SQLite file's parent folder is created if needed.
    create
        Whether a missing SQLite catalog is created (commands that only read pass False).

    Raises
    ------
    NotFoundError
        If ``create`` is off and the SQLite file does not exist.
    CatalogError
        If the database cannot be opened or holds a catalog of another schema version.
    """

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        parsed = make_url(url)
        opened = url
        #: A SQLite catalog this process may not write (a read-only home) is opened
        #: read-only: queries work, and a write fails saying so.
        self.read_only = False
        if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
            database = Path(parsed.database)
            if not create and not database.exists():
                raise NotFoundError(
                    f"no catalog at {database}: nothing has been recorded there yet "
                    "(is MATSCREEN_HOME or MATSCREEN_CATALOG_URL the one you meant?)"
                )
            read_only_url = schema.sqlite_read_only_url(database)
            if read_only_url is not None:
                opened, self.read_only = read_only_url, True
            else:
                database.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(opened, future=True)
            schema.enable_sqlite_foreign_keys(self.engine, wal=not self.read_only)
            if not self.read_only:
                self._create_tables()
            self._check_version()
        except (SQLAlchemyError, ImportError) as exc:
            # The driver's own message, without SQLAlchemy's "Background on this error" line.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise CatalogError(
                f"cannot open catalog at {mask_url(url)}: {mask_url(reason)}"
            ) from exc
        self.dialect = self.engine.dialect.name

    # -- set-up ---------------------------------------------------------------------------
    def _create_tables(self) -> None:
        """Create the tables and indexes a new catalog lacks. Two processes opening one new
        catalog at once both try; the one that loses finds them made and checks again."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                schema.metadata.create_all(self.engine)
                # create_all adds no index to a table that exists: a catalog made by an
                # older matscreen gets the edge indexes the provenance queries need here.
                for index in schema.edges.indexes:
                    index.create(self.engine, checkfirst=True)
                return
            except (OperationalError, ProgrammingError, IntegrityError) as exc:
                # SQLite: "table/index … already exists" or "database is locked";
                # PostgreSQL: "already exists", or a duplicate key in its catalog of types.
                message = str(exc)
                racing = ("already exists", "duplicate key", "database is locked")
                if not any(words in message for words in racing) or (
                    attempt == _CREATE_ATTEMPTS - 1
                ):
                    raise
                time.sleep(0.1 * (attempt + 1))

    def check_writable(self) -> None:
        """Refuse, before any work, to run against a catalog this process cannot write.

        Raises
        ------
        CatalogError
            If the catalog was opened read-only.
        """
        if self.read_only:
            raise CatalogError(
                f"catalog {self.url_for_display} is read-only for this user: a run records "
                "into it (use a home you can write, MATSCREEN_HOME)"
            )

    def _check_version(self) -> None:
        upgrade_needed = False
        with self._transaction() as conn:
            row = conn.execute(
                select(schema.catalog_info.c.value).where(schema.catalog_info.c.key == "schema")
            ).first()
            if row is None:
                conn.execute(
                    self._insert_ignore(schema.catalog_info),
                    [{"key": "schema", "value": str(schema.SCHEMA_VERSION)}],
                )
            elif row[0] == "1":
                upgrade_needed = True
            elif row[0] != str(schema.SCHEMA_VERSION):
                raise CatalogError(
                    f"catalog {self.url_for_display} has schema version {row[0]}, "
                    f"this matscreen expects {schema.SCHEMA_VERSION}"
                )
        if upgrade_needed:
            from matscreen.catalog.migrate import upgrade

            self.check_writable()  # an older catalog is upgraded by a process that may write

            upgrade(self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction; a database that cannot take the write (disk full, locked
        past the wait, read-only) raises CatalogError naming the catalog, and nothing of
        the transaction is kept."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise CatalogError(
                f"catalog {self.url_for_display}: cannot write ({mask_url(str(exc.orig))})"
            ) from exc

    def _insert_ignore(self, table: Any) -> Any:
        if self.engine.dialect.name == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        return insert(table)

    # -- writes ---------------------------------------------------------------------------
    def ensure_agent(self, kind: str, name: str, attributes: dict[str, Any]) -> str:
        """Store an agent (software or person) if new and return its id.

        Raises
        ------
        ProvenanceRuleError
            If ``kind`` is not a known agent kind.
        """
        self.check_writable()
        if kind not in AGENT_KINDS:
            raise ProvenanceRuleError(f"unknown agent kind {kind!r} for agent {name!r}")
        agent_id = content_hash({"agent": kind, "name": name, "attributes": attributes})
        with self._transaction() as conn:
            conn.execute(
                self._insert_ignore(schema.nodes), [{"id": agent_id, "node_type": "agent"}]
            )
            conn.execute(
                self._insert_ignore(schema.agents),
                [
                    {
                        "id": agent_id,
                        "kind": kind,
                        "name": name,
                        "attributes": canonical_json(attributes),
                    }
                ],
            )
        return agent_id

    def start_activity(self, activity: Activity, agents: Sequence[str] = ()) -> None:
        """Store a running (or finished) activity and its associations with ``agents``.

        Raises
        ------
        CatalogError
            If an activity with this id exists already.
        """
        self.check_writable()
        try:
            with self._transaction() as conn:
                self._insert_activity(conn, activity)
                self._insert_edges(
                    conn,
                    [Edge("wasAssociatedWith", activity.id, a) for a in agents],
                    {activity.id: "activity"},
                )
        except IntegrityError as exc:
            raise CatalogError(
                f"activity {activity.name} ({activity.id}) cannot be stored: {exc.orig}"
            ) from exc

    def finish_activity(self, activity_id: str, status: str, ended_at: str | None = None) -> None:
        """Set the end time and final status of a running activity (once).

        Raises
        ------
        NotFoundError
            If no activity has this id.
        ProvenanceRuleError
            If ``status`` is not a final status, or the activity has ended already.
        """
        if status not in ACTIVITY_STATUSES or status == "running":
            raise ProvenanceRuleError(f"{status!r} is not a final status (activity {activity_id})")
        table = schema.activities
        with self._transaction() as conn:
            recorded = conn.execute(select(table.c.status).where(table.c.id == activity_id)).first()
            if recorded is None:
                raise NotFoundError(f"no activity {activity_id} in catalog {self.url_for_display}")
            if recorded[0] != "running":
                raise ProvenanceRuleError(
                    f"activity {activity_id} has ended already ({recorded[0]}); it ends once"
                )
            conn.execute(
                update(table)
                .where(table.c.id == activity_id)
                .values(status=status, ended_at=ended_at or utc_now())
            )

    def dead_runs(self) -> list[tuple[str, str]]:
        """(id, name) of every activity recorded as running by a process of this host that
        is gone (see :mod:`matscreen.catalog.liveness`)."""
        table = schema.activities
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(table.c.id, table.c.name, table.c.host, table.c.parameters).where(
                    table.c.status == "running"
                )
            ).all()
        return [
            (row.id, row.name)
            for row in rows
            if has_died("running", row.host, json.loads(row.parameters))
        ]

    def mark_crashed(self) -> list[str]:
        """Mark ``crashed`` every running activity of this host whose process is gone.

        Returns
        -------
        list of str
            The ids marked.
        """
        marked = []
        for activity_id, _ in self.dead_runs():
            try:
                self.finish_activity(activity_id, "crashed")
            except ProvenanceRuleError:  # ended meanwhile, by its own process or another run
                continue
            marked.append(activity_id)
        return marked

    def record_step(
        self,
        activity: Activity,
        generated: Sequence[Entity] = (),
        used: Iterable[str] = (),
        derived: Iterable[Edge] = (),
        agents: Sequence[str] = (),
        children: Sequence[Activity] = (),
    ) -> set[str]:
        """Store one finished step atomically: its activity, what it used and generated.

        An entity that is already stored (same content, same id) is not generated again:
        the catalog keeps one generation per entity, and the activity that arrived at the
        same content is recorded as having used the stored entity.

        Parameters
        ----------
        activity
            The step's activity.
        generated
            Entities the step produced.
        used
            Ids of stored entities the step read.
        derived
            Extra edges, typically ``wasDerivedFrom`` between entities.
        agents
            Agent ids the activity was associated with.
        children
            Activities that ran inside this one (e.g. the task runs a step mapped).

        Returns
        -------
        set of str
            Ids of the entities that were new to the catalog.

        Raises
        ------
        ProvenanceRuleError
            If an edge breaks the rules table or names a node that is not stored.
        """
        edges = list(derived)
        for edge in edges:
            if edge.relation not in RELATIONS:
                raise ProvenanceRuleError(f"unknown relation {edge.relation!r} in {edge}")
        by_id = {entity.id: entity for entity in generated}
        try:
            with self._transaction() as conn:
                self._insert_activity(conn, activity)
                for child in children:
                    self._insert_activity(conn, child)
                existing = self._existing_entity_ids(conn, list(by_id))
                absent = [entity for eid, entity in by_id.items() if eid not in existing]
                # Another writer may store the same content between the look-up and the
                # insert: only what this transaction inserted was generated by this step.
                inserted = self._insert_entities(conn, absent)
                new = [entity for entity in absent if entity.id in inserted]
                existing |= {entity.id for entity in absent if entity.id not in inserted}
                step_edges = [Edge("wasGeneratedBy", e.id, activity.id) for e in new]
                step_edges += [Edge("used", activity.id, eid) for eid in existing]
                step_edges += [Edge("used", activity.id, eid) for eid in used]
                step_edges += [Edge("wasAssociatedWith", activity.id, a) for a in agents]
                # Nodes of this step need no look-up: the step's entities are entities
                # (stored now or before) and its activities are activities.
                types = dict.fromkeys(by_id, "entity")
                types.update((a.id, "activity") for a in (activity, *children))
                self._insert_edges(conn, step_edges + edges, types)
        except IntegrityError as exc:
            raise ProvenanceRuleError(
                f"step {activity.name} ({activity.id}) breaks the catalog's rules: {exc.orig}"
            ) from exc
        return {entity.id for entity in new}

    def _insert_activity(self, conn: Connection, activity: Activity) -> None:
        conn.execute(insert(schema.nodes), [{"id": activity.id, "node_type": "activity"}])
        conn.execute(
            insert(schema.activities),
            [
                {
                    "id": activity.id,
                    "kind": activity.kind,
                    "name": activity.name,
                    "prefect_run_id": activity.prefect_run_id,
                    "parent_id": activity.parent_id,
                    "parameters": canonical_json(activity.parameters),
                    "started_at": activity.started_at,
                    "ended_at": activity.ended_at,
                    "status": activity.status,
                    "host": activity.host,
                    "software": canonical_json(activity.software),
                    "git_commit": activity.git_commit,
                }
            ],
        )

    def _existing_entity_ids(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = conn.execute(select(schema.entities.c.id).where(schema.entities.c.id.in_(chunk)))
            found.update(row[0] for row in rows)
        return found

    def _insert_entities(self, conn: Connection, new: Sequence[Entity]) -> set[str]:
        """Insert entities that are not stored yet; return the ids this call inserted.

        An entity that a concurrent writer stored first is skipped (on PostgreSQL the
        insert waits for that writer's transaction to end), so its id is not returned.
        """
        if not new:
            return set()
        now = utc_now()
        inserted = set(
            conn.execute(
                self._insert_ignore(schema.nodes).returning(schema.nodes.c.id),
                [{"id": e.id, "node_type": "entity"} for e in new],
            ).scalars()
        )
        rows = [
            {
                "id": e.id,
                "kind": e.kind,
                "name": e.name,
                "attributes": e.attributes_json,
                "created_at": now,
            }
            for e in new
            if e.id in inserted
        ]
        if rows:
            conn.execute(insert(schema.entities), rows)
        return inserted

    def _insert_edges(
        self, conn: Connection, edges: Sequence[Edge], known: Mapping[str, str] | None = None
    ) -> None:
        """Insert edges whose ends the rules table allows; ``known`` gives the node type of
        ids this transaction knows (its activity and entities).

        The database's foreign keys, on (node id, node type), refuse an edge whose end is
        not stored or is of another type, so other ends are not looked up first: only when
        the insert is refused are they looked up, to name the edge at fault.
        """
        if not edges:
            return
        known = known or {}
        now = utc_now()
        rows = []
        for edge in edges:
            subject_type, object_type = RELATIONS[edge.relation]
            check_edge_ends(edge, known)
            rows.append(
                {
                    "relation": edge.relation,
                    "subject_id": edge.subject_id,
                    "subject_type": subject_type,
                    "object_id": edge.object_id,
                    "object_type": object_type,
                    "recorded_at": now,
                }
            )
        try:
            conn.execute(self._insert_ignore(schema.edges), rows)
        except IntegrityError:
            ids = sorted({e.subject_id for e in edges} | {e.object_id for e in edges})
            if self.engine.dialect.name == "sqlite":
                # SQLite undid the refused statement only: the transaction can be read.
                types = self._node_types(conn, ids)
            else:
                # PostgreSQL aborted the transaction: look up what was committed before it
                # (the nodes the transaction inserted itself are in ``known``).
                with self.engine.connect() as other:
                    types = {**self._node_types(other, ids), **known}
            for edge in edges:
                check_edge_ends(edge, types, stored=True)
            raise

    def _node_types(self, conn: Connection, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            rows = conn.execute(
                select(schema.nodes.c.id, schema.nodes.c.node_type).where(
                    schema.nodes.c.id.in_(chunk)
                )
            )
            found.update({row[0]: row[1] for row in rows})
        return found
