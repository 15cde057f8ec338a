"""Lineage: from a ranked candidate back to its source record, through features and models.

The walk is one recursive SQL query over the edges (``wasDerivedFrom``, ``wasGeneratedBy``,
``used``) from the ranking upward. Per-record entities other than the candidate's own are
not followed: the query reads the per-record edges of the ranking and of the feature table
once, but never walks on from the other records, so the result stays one chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, text

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.rules import UPSTREAM_RELATIONS
from matscreen.catalog.store import Activity, Catalog, Entity
from matscreen.tasks.errors import NotFoundError
from matscreen.tasks.tables import parquet_to_frame

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

_UPSTREAM = text(
    """
    WITH RECURSIVE up(id) AS (
        SELECT CAST(:start AS VARCHAR(64))
        UNION
        SELECT e.object_id
        FROM edges e
        JOIN up ON e.subject_id = up.id
        LEFT JOIN entities en ON en.id = e.object_id
        WHERE e.relation IN :relations
          AND (en.kind IS NULL OR en.kind NOT IN :per_record OR en.id = :keep)
    )
    SELECT id FROM up
    """
).bindparams(bindparam("relations", expanding=True), bindparam("per_record", expanding=True))


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

    Structure records and record errors other than ``keep`` are not followed.
    """
    with catalog.engine.connect() as conn:
        rows = conn.execute(
            _UPSTREAM,
            {
                "start": start_id,
                "relations": list(UPSTREAM_RELATIONS),
                "per_record": list(PER_RECORD_KINDS),
                "keep": keep or "",
            },
        )
        return {row[0] for row in rows}


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
    read = set()
    for snapshot in snapshots:
        steps = [e.object_id for e in catalog.edges(relation="wasGeneratedBy", subject_id=snapshot)]
        steps += [e.subject_id for e in catalog.edges(relation="used", object_id=snapshot)]
        if any(_run_of(catalog, step) == run_id for step in steps):
            read.add(snapshot)
    return [e for e in entities if e.kind != "source_snapshot" or e.id in read]


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
    ranking_ids = [
        edge.subject_id for edge in catalog.edges(relation="wasDerivedFrom", object_id=record.id)
    ]
    rankings = [e for e in catalog.get_entities(ranking_ids) if e.kind == "ranking"]
    if run_id is not None:
        in_run = set()
        for activity in catalog.activities(parent_id=run_id):
            in_run.update(e.subject_id for e in catalog.edges(object_id=activity.id))
            in_run.update(
                e.object_id for e in catalog.edges(subject_id=activity.id, relation="used")
            )
        rankings = [e for e in rankings if e.id in in_run]
    if not rankings:
        where = f" in run {run_id}" if run_id else ""
        raise NotFoundError(f"candidate {record.name} is in no ranking{where}")
    ranking = max(rankings, key=lambda e: e.created_at)
    frame = parquet_to_frame(artifacts.get_bytes(ranking.attributes["artifact_sha256"]))
    row = {"id": record.name, **frame.loc[record.name].to_dict()}

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
