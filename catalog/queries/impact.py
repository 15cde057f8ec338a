"""Impact: everything downstream of an entity, and the runs it reached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, text

from matscreen.catalog.lineage import PER_RECORD_SQL, RUN_LEVEL_KINDS
from matscreen.catalog.queries.nodes import (
    CHUNK,
    NodeRef,
    RunSummary,
    kind_runs,
    resolve_entity,
    run_summaries,
    sorted_downstream,
)
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins, runs_of


@dataclass(frozen=True)
class Impact:
    """Everything downstream of an entity.

    Attributes
    ----------
    start
        The entity asked about.
    entities
        Downstream entities other than per-record ones, from the source to the result.
    per_record
        How many structure records and record errors are derived from the start, by kind
        (counted, not listed: a snapshot has thousands).
    runs
        The runs the downstream entities belong to.
    runs_of
        For each downstream entity id, the ids of the runs it belongs to.
    """

    start: NodeRef
    entities: list[NodeRef]
    per_record: dict[str, int]
    runs: list[RunSummary]
    runs_of: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rankings(self) -> list[NodeRef]:
        """The rankings that depend on the start."""
        return [e for e in self.entities if e.kind == "ranking"]

    @property
    def reports(self) -> list[NodeRef]:
        """The reports that depend on the start."""
        return [e for e in self.entities if e.kind == "report"]


# The walk follows wasDerivedFrom against its direction, from an entity to those derived
# from it. It does not go through ``used`` to what the using activity generated: a step that
# arrives at content already stored records it as used, so that path would make a step's
# other outputs depend on whichever of them happened to be stored before.
#
# Per-record entities (structure records, record errors) are shared by every run that read
# the same content, so walking on from them freely would tie a snapshot to runs that read
# another file holding some of the same records. From a per-record entity other than the
# start, the walk goes on only to the run-level entities of the runs that generated or used
# the start (``:scoped``); the rankings of those runs are reached through their records and
# through their split, which is derived from the snapshots the run read. Such a step needs
# no lookup of the entity it reaches (its kind is left empty): that keeps a snapshot's
# thousands of records cheap to walk from.
_IMPACT = text(
    f"""
    WITH RECURSIVE down(id, kind) AS (
        SELECT CAST(id AS VARCHAR(64)), CAST(kind AS VARCHAR(32)) FROM entities WHERE id = :start
        UNION
        SELECT CAST(e.subject_id AS VARCHAR(64)), CAST(
            CASE WHEN d.kind IN ({PER_RECORD_SQL}) AND d.id <> :start THEN ''
            ELSE (SELECT x.kind FROM entities x WHERE x.id = e.subject_id) END AS VARCHAR(32))
        FROM down d
        CROSS JOIN edges e
        WHERE e.object_id = d.id AND e.relation = 'wasDerivedFrom'
          AND (d.kind NOT IN ({PER_RECORD_SQL}) OR d.id = :start OR e.subject_id IN :scoped)
    )
    SELECT CASE WHEN kind IN ({PER_RECORD_SQL}) THEN '' ELSE id END,
           CASE WHEN kind IN ({PER_RECORD_SQL}) THEN kind ELSE '' END,
           COUNT(*)
    FROM down WHERE id <> :start
    GROUP BY 1, 2
    """
).bindparams(bindparam("scoped", expanding=True))


def impact(catalog: Catalog, entity_id: str) -> Impact:
    """Everything downstream of an entity, with the rankings, reports and runs it reaches.

    Parameters
    ----------
    entity_id
        The entity's id, a unique id prefix (8 characters or more) or its name.

    Raises
    ------
    NotFoundError
        If no entity (or more than one) matches ``entity_id``.
    """
    start = resolve_entity(catalog, entity_id)
    with ordered_joins(catalog) as conn:
        start_runs = runs_of(conn, [start.id]).get(start.id, set())
        scoped = sorted(
            {ref.id for run, ref, _ in kind_runs(conn, RUN_LEVEL_KINDS) if run in start_runs}
        )
        rows = conn.execute(_IMPACT, {"start": start.id, "scoped": scoped}).all()
        per_record = {kind: count for node_id, kind, count in rows if not node_id}
        ids = [node_id for node_id, _, _ in rows if node_id]
        entities = sorted_downstream(_entity_refs(conn, ids))
        roots = runs_of(conn, ids)
        runs = run_summaries(conn, set().union(*roots.values()))
    by_node = {node_id: sorted(roots.get(node_id, ())) for node_id in ids}
    return Impact(start, entities, per_record, runs, by_node)


def _entity_refs(conn: Connection, ids: Sequence[str]) -> list[NodeRef]:
    query = text("SELECT id, kind, name FROM entities WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    refs = []
    for start in range(0, len(ids), CHUNK):
        rows = conn.execute(query, {"ids": list(ids[start : start + CHUNK])})
        refs += [NodeRef(row[0], "entity", row[1], row[2]) for row in rows]
    return refs
