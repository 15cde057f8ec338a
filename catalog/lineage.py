"""Lineage: from a ranked candidate back to its source record, through features and models.

The rankings that may hold a candidate are found downstream of its record (record ->
feature table -> prediction set -> ranking); the latest whose table has the candidate's row
is the start. From there the walk goes up the edges (``wasDerivedFrom``, ``wasGeneratedBy``,
``used``) one level per query. Of the per-record entities it follows only the candidate's
own: from a feature table it looks up the one edge to that record instead of reading the
table's edge to every row, so a lineage costs the same in a campaign of a thousand
candidates and of a million.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import bindparam, text

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.rules import UPSTREAM_RELATIONS
from matscreen.catalog.store import Activity, Catalog, Entity
from matscreen.tasks.errors import NotFoundError

#: Entity kinds of which a campaign holds one per record; the walk keeps only the candidate's.
PER_RECORD_KINDS = ("structure_record", "record_error")
#: The same kinds as an SQL list, for ``kind IN (...)``.
PER_RECORD_SQL = ", ".join(f"'{kind}'" for kind in PER_RECORD_KINDS)

#: The order in which a lineage is told, from the result back to the source.
KIND_ORDER = (
    "report",
    "ranking",
    "prediction_set",
    "model",
    "training_set",
    "data_split",
    "feature_table",
    "structure_record",
    "source_snapshot",
    "campaign_spec",
)

#: Entity kinds that derive from one record per row (a feature table): walking up from one,
#: a lineage follows only the candidate's own record, never the table's other rows.
PER_ROW_KINDS = ("feature_table",)

# One level of the upward walk: the parents of the frontier's nodes, but no per-record
# entity other than ``:keep``. From a feature table the edge to a record is looked up only
# for ``:keep``, by its (relation, subject, object) key, so the walk costs the same for a
# table of ten rows and of a million. (A ranking of an older catalog names each record; its
# edges are read and all but ``:keep``'s dropped.)
_PARENTS = text(
    """
    SELECT e.object_id FROM edges e
    LEFT JOIN entities en ON en.id = e.object_id
    WHERE e.subject_id IN :plain AND e.relation IN :relations
      AND (en.kind IS NULL OR en.kind NOT IN :per_record OR en.id = :keep)
    UNION
    SELECT e.object_id FROM edges e
    WHERE e.subject_id IN :per_row AND e.relation IN :relations
      AND e.relation <> 'wasDerivedFrom'
    UNION
    SELECT e.object_id FROM edges e
    WHERE e.relation = 'wasDerivedFrom' AND e.subject_id IN :per_row AND e.object_id = :keep
    """
).bindparams(
    bindparam("plain", expanding=True),
    bindparam("per_row", expanding=True),
    bindparam("relations", expanding=True),
    bindparam("per_record", expanding=True),
)

# The rankings downstream of a record: through the feature tables that hold it and the
# prediction sets made from those tables (and, in catalogs written before rankings stopped
# naming each record, directly). ``CROSS JOIN`` keeps SQLite's planner from reading every
# edge of the relation first.
_RANKINGS_OF = text(
    """
    WITH RECURSIVE down(id) AS (
        SELECT CAST(:record AS VARCHAR(64))
        UNION
        SELECT e.subject_id
        FROM down d
        CROSS JOIN edges e
        JOIN entities en ON en.id = e.subject_id
        WHERE e.object_id = d.id AND e.relation = 'wasDerivedFrom'
          AND en.kind IN ('feature_table', 'prediction_set', 'ranking')
    )
    SELECT en.id FROM down JOIN entities en ON en.id = down.id WHERE en.kind = 'ranking'
    """
)


@dataclass(frozen=True)
class Lineage:
    """A candidate's chain: its ranked row, the entities upstream and their activities,
    and which of their artifact files (models, tables) no longer match their hashes."""

    candidate: str
    record: Entity
    ranking: Entity
    row: dict[str, Any]
    entities: list[Entity]
    generated_by: dict[str, Activity] = field(default_factory=dict)
    #: Entity id -> what is wrong with its artifact file (missing, corrupt); intact ones
    #: are not listed.
    damaged: dict[str, str] = field(default_factory=dict)


def upstream_ids(catalog: Catalog, start_id: str, keep: str | None = None) -> set[str]:
    """Return the ids of every node upstream of ``start_id`` (itself included).

    Structure records and record errors other than ``keep`` are not followed, and from a
    feature table only the edge to ``keep`` is.
    """
    found = {start_id}
    frontier = [start_id]
    with catalog.engine.connect() as conn:
        while frontier:
            kinds = dict(
                conn.execute(
                    text("SELECT id, kind FROM entities WHERE id IN :ids").bindparams(
                        bindparam("ids", expanding=True)
                    ),
                    {"ids": frontier},
                ).all()
            )
            per_row = [i for i in frontier if kinds.get(i) in PER_ROW_KINDS]
            plain = [i for i in frontier if kinds.get(i) not in PER_ROW_KINDS]
            parents = {
                row[0]
                for row in conn.execute(
                    _PARENTS,
                    {
                        "plain": plain or [""],
                        "per_row": per_row or [""],
                        "relations": list(UPSTREAM_RELATIONS),
                        "per_record": list(PER_RECORD_KINDS),
                        "keep": keep or "",
                    },
                )
            } - found
            found |= parents
            frontier = sorted(parents)
    return found


def rankings_of(catalog: Catalog, record_id: str) -> list[str]:
    """Ids of the rankings made from predictions on a record's features.

    A ranking among them holds the record only if its table has the record's row (the
    feature table of a training pool also serves its ``both`` candidates).
    """
    with catalog.engine.connect() as conn:
        return [row[0] for row in conn.execute(_RANKINGS_OF, {"record": record_id})]


def ranking_row(artifacts: ArtifactStore, ranking: Entity, name: str) -> dict[str, Any] | None:
    """The ranking's row of the candidate ``name`` (None if it has none).

    The table's bytes are checked against their hash; then only its ``id`` column and the
    row group holding the candidate are decoded.
    """
    data = artifacts.get_bytes(ranking.attributes["artifact_sha256"])
    table = pq.ParquetFile(pa.BufferReader(data))
    for group in range(table.num_row_groups):
        ids = table.read_row_group(group, columns=["id"]).column("id")
        position = pc.index(ids, name).as_py()
        if position >= 0:
            row = table.read_row_group(group).to_pandas().iloc[position].to_dict()
            return {"id": name, **{k: v for k, v in row.items() if k != "id"}}
    return None


def _this_runs_snapshots(catalog: Catalog, entities: list[Entity], ranking_id: str) -> list[Entity]:
    """Drop source snapshots that the ranking's run did not read.

    A record read unchanged by two runs (the same row of two releases of a file) derives
    from both runs' snapshots; the lineage of one ranking names the snapshots its own run
    read (generated, or used when the same content was read before).
    """
    snapshots = [e.id for e in entities if e.kind == "source_snapshot"]
    generated = catalog.edges(relation="wasGeneratedBy", subject_id=ranking_id)
    if not snapshots or not generated:
        return entities
    run_id = _run_of(catalog, generated[0].object_id)
    read = {s for s in snapshots if run_id in _runs_of_entity(catalog, s)}
    return [e for e in entities if e.kind != "source_snapshot" or e.id in read]


def _runs_of_entity(catalog: Catalog, entity_id: str) -> set[str]:
    """The runs that generated an entity or used it (a run that arrives at content already
    stored records it as used)."""
    steps = [e.object_id for e in catalog.edges(relation="wasGeneratedBy", subject_id=entity_id)]
    steps += [e.subject_id for e in catalog.edges(relation="used", object_id=entity_id)]
    return {_run_of(catalog, step) for step in steps}


def _run_of(catalog: Catalog, activity_id: str) -> str:
    """The run an activity belongs to (itself for a run)."""
    activity = catalog.get_activity(activity_id)
    return activity.parent_id or activity.id


def resolve_record(catalog: Catalog, candidate: str) -> Entity:
    """Find a structure record by its id (``source:id``) or by the source's own id.

    Raises
    ------
    NotFoundError
        If no record, or more than one from different sources, has this id.
    """
    found = catalog.find_entities("structure_record", name=candidate)
    if not found:
        found = catalog.find_entities("structure_record", name_endswith=f":{candidate}")
    names = sorted({e.name for e in found})
    if not names:
        raise NotFoundError(f"no structure record with id {candidate!r} in the catalog")
    if len(names) > 1:
        raise NotFoundError(f"id {candidate!r} is ambiguous, say which: {', '.join(names)}")
    # The same record read twice with different content (a corrected source) gives two
    # entities of one name; the latest stored is the current one.
    return max(found, key=lambda e: e.created_at)


def lineage(
    catalog: Catalog, artifacts: ArtifactStore, candidate: str, run_id: str | None = None
) -> Lineage:
    """Trace a ranked candidate back to its source.

    Parameters
    ----------
    candidate
        The record id as in the shortlist (``source:id``) or the source's own id.
    run_id
        The campaign run whose ranking to start from; default the latest ranking that
        holds the candidate.

    Raises
    ------
    NotFoundError
        If the candidate, or a ranking holding it (in that run), is not in the catalog.
    """
    record = resolve_record(catalog, candidate)
    rankings = catalog.get_entities(rankings_of(catalog, record.id))
    if run_id is not None:
        rankings = [e for e in rankings if run_id in _runs_of_entity(catalog, e.id)]
    # The latest ranking whose table holds the candidate.
    row = None
    for ranking in sorted(rankings, key=lambda e: e.created_at, reverse=True):
        row = ranking_row(artifacts, ranking, record.name)
        if row is not None:
            break
    if row is None:
        where = f" in run {run_id}" if run_id else ""
        raise NotFoundError(f"candidate {record.name} is in no ranking{where}")

    ids = upstream_ids(catalog, ranking.id, keep=record.id)
    entities = _this_runs_snapshots(catalog, catalog.get_entities(sorted(ids)), ranking.id)
    order = {kind: i for i, kind in enumerate(KIND_ORDER)}
    entities.sort(key=lambda e: (order.get(e.kind, len(order)), e.name))
    generated_by: dict[str, Activity] = {}
    for entity in entities:
        edges = catalog.edges(relation="wasGeneratedBy", subject_id=entity.id)
        if edges:
            generated_by[entity.id] = catalog.get_activity(edges[0].object_id)
    damaged = artifacts.problems_of(entities)
    return Lineage(record.name, record, ranking, row, entities, generated_by, damaged)
