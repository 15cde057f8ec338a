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
from matscreen.catalog.nodes import Activity, Entity
from matscreen.catalog.rules import ENTITY_KINDS, UPSTREAM_RELATIONS
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins, runs_of
from matscreen.tasks.errors import ArtifactError, NotFoundError

#: Entity kinds of which a campaign holds one per record; the walk keeps only the candidate's.
PER_RECORD_KINDS = ("structure_record", "record_error")
#: The same kinds as an SQL list, for ``kind IN (...)``.
PER_RECORD_SQL = ", ".join(f"'{kind}'" for kind in PER_RECORD_KINDS)
#: Entity kinds of which a run holds a few (everything but the per-record kinds).
RUN_LEVEL_KINDS = tuple(kind for kind in ENTITY_KINDS if kind not in PER_RECORD_KINDS)

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
    WHERE e.subject_id IN :per_row AND e.relation IN :step_relations
    UNION
    SELECT e.object_id FROM edges e
    WHERE e.relation = 'wasDerivedFrom' AND e.subject_id IN :per_row AND e.object_id = :keep
    """
).bindparams(
    bindparam("plain", expanding=True),
    bindparam("per_row", expanding=True),
    bindparam("relations", expanding=True),
    bindparam("step_relations", expanding=True),
    bindparam("per_record", expanding=True),
)

# What was made of a record on the way to a ranking: the feature tables that hold it, the
# prediction sets made from those tables, the rankings made from those (and, in catalogs
# written before rankings stopped naming each record, the rankings naming it). ``CROSS
# JOIN`` keeps SQLite's planner from reading every edge of the relation first.
_DOWNSTREAM = text(
    """
    WITH RECURSIVE down(id, kind) AS (
        SELECT CAST(:record AS VARCHAR(64)), CAST('' AS VARCHAR(32))
        UNION
        SELECT e.subject_id, en.kind
        FROM down d
        CROSS JOIN edges e
        JOIN entities en ON en.id = e.subject_id
        WHERE e.object_id = d.id AND e.relation = 'wasDerivedFrom'
          AND en.kind IN ('feature_table', 'prediction_set', 'ranking')
    )
    SELECT id, kind FROM down WHERE id <> :record
    """
)

# The kinds of a walk's frontier (activities have none).
_KINDS = text("SELECT id, kind FROM entities WHERE id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)

#: Relations followed up from a feature table besides the edge to the candidate's record.
_STEP_RELATIONS = [r for r in UPSTREAM_RELATIONS if r != "wasDerivedFrom"]


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
    #: are not listed. A newer ranking whose table could not be read (so whether it holds
    #: the candidate is unknown) is listed too.
    damaged: dict[str, str] = field(default_factory=dict)


def upstream_ids(
    catalog: Catalog,
    start_id: str,
    keep: str | None = None,
    predictions: set[str] | None = None,
) -> set[str]:
    """Return the ids of every node upstream of ``start_id`` (itself included).

    Structure records and record errors other than ``keep`` are not followed, and from a
    feature table only the edge to ``keep`` is. ``predictions``, when given, are the only
    prediction sets followed: a streamed campaign's ranking derives from one per chunk and
    model, and a candidate's lineage goes through its own chunk's.
    """
    found: set[str] = set()
    seen = {start_id}
    frontier = [start_id]
    with ordered_joins(catalog) as conn:
        while frontier:
            kinds: dict[str, str] = dict(conn.execute(_KINDS, {"ids": frontier}).all())
            if predictions is not None:
                frontier = [
                    i for i in frontier if kinds.get(i) != "prediction_set" or i in predictions
                ]
            if not frontier:
                break
            found.update(frontier)
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
                        "step_relations": _STEP_RELATIONS,
                        "per_record": list(PER_RECORD_KINDS),
                        "keep": keep or "",
                    },
                )
            } - seen
            seen |= parents
            frontier = sorted(parents)
    return found


def downstream_of(catalog: Catalog, record_id: str) -> dict[str, str]:
    """``{id: kind}`` of the feature tables, prediction sets and rankings made from a record.

    A ranking among them holds the record only if its table has the record's row (the
    feature table of a training pool also serves its ``both`` candidates).
    """
    with ordered_joins(catalog) as conn:
        return dict(conn.execute(_DOWNSTREAM, {"record": record_id}).all())


def ranking_row(artifacts: ArtifactStore, ranking: Entity, name: str) -> dict[str, Any] | None:
    """The ranking's row of the candidate ``name`` (None if it has none).

    The table's bytes are checked against their hash; then only its ``id`` column and the
    row group holding the candidate are decoded.

    Raises
    ------
    ArtifactError
        If the ranking's table is missing or corrupt.
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


def _this_runs_snapshots(catalog: Catalog, entities: list[Entity], run_id: str) -> list[Entity]:
    """Drop source snapshots that the run did not read.

    A record read unchanged by two runs (the same row of two releases of a file) derives
    from both runs' snapshots; the lineage of one run's ranking names the snapshots that run
    read (generated, or used when the same content was read before).
    """
    snapshots = [e.id for e in entities if e.kind == "source_snapshot"]
    with ordered_joins(catalog) as conn:
        runs = runs_of(conn, snapshots)
    return [e for e in entities if e.kind != "source_snapshot" or run_id in runs.get(e.id, ())]


def _run_of(catalog: Catalog, activity_id: str) -> str:
    """The run an activity belongs to (itself for a run)."""
    activity = catalog.get_activity(activity_id)
    return activity.parent_id or activity.id


def record_versions(catalog: Catalog, candidate: str) -> list[Entity]:
    """Every stored version of a structure record, by its id (``source:id``) or the source's
    own id, the latest first (a record read again with other content is a new entity of the
    same name).

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
    return sorted(found, key=lambda e: (e.created_at, e.id), reverse=True)


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
    ArtifactError
        If no readable ranking holds the candidate and a ranking's table that might is
        missing or corrupt.
    """
    versions = record_versions(catalog, candidate)
    name = versions[0].name
    made = {v.id: downstream_of(catalog, v.id) for v in versions}
    ranking_ids = sorted({i for down in made.values() for i, k in down.items() if k == "ranking"})
    rankings = catalog.get_entities(ranking_ids)
    if run_id is not None:
        with ordered_joins(catalog) as conn:
            runs = runs_of(conn, [e.id for e in rankings])
        rankings = [e for e in rankings if run_id in runs.get(e.id, ())]
    # The latest ranking whose table holds the candidate.
    found: tuple[Entity, dict[str, Any]] | None = None
    unreadable: dict[str, ArtifactError] = {}
    for ranking in sorted(rankings, key=lambda e: (e.created_at, e.id), reverse=True):
        try:
            row = ranking_row(artifacts, ranking, name)
        except ArtifactError as exc:
            unreadable[ranking.id] = exc  # it may or may not hold the candidate
            continue
        if row is not None:
            found = (ranking, row)
            break
    if found is None:
        if unreadable:
            raise next(iter(unreadable.values()))
        where = f" in run {run_id}" if run_id else ""
        raise NotFoundError(f"candidate {name} is in no ranking{where}")
    ranking, row = found
    # The run whose ranking this is, and the version of the record that run read (a byte-
    # identical feature table may derive from two versions whose structure is the same).
    generated = catalog.edges(relation="wasGeneratedBy", subject_id=ranking.id)
    run = run_id or (_run_of(catalog, generated[0].object_id) if generated else "")
    holding = [v for v in versions if ranking.id in made[v.id]]
    with ordered_joins(catalog) as conn:
        read_by = runs_of(conn, [v.id for v in holding])
    record = next((v for v in holding if run in read_by.get(v.id, ())), holding[0])
    predictions = {i for i, k in made[record.id].items() if k == "prediction_set"}
    if run:
        # Two runs that rank the same candidates alike store one ranking (content-addressed)
        # derived from both runs' prediction sets: follow this run's only.
        with ordered_joins(catalog) as conn:
            made_by = runs_of(conn, sorted(predictions))
        predictions = {i for i in predictions if run in made_by.get(i, ())} or predictions

    ids = upstream_ids(catalog, ranking.id, keep=record.id, predictions=predictions)
    entities = catalog.get_entities(sorted(ids))
    if run:
        entities = _this_runs_snapshots(catalog, entities, run)
    order = {kind: i for i, kind in enumerate(KIND_ORDER)}
    entities.sort(key=lambda e: (order.get(e.kind, len(order)), e.name))
    generated_by: dict[str, Activity] = {}
    for entity in entities:
        edges = catalog.edges(relation="wasGeneratedBy", subject_id=entity.id)
        if edges:
            generated_by[entity.id] = catalog.get_activity(edges[0].object_id)
    damaged = artifacts.problems_of(entities)
    for ranking_id, problem in unreadable.items():
        damaged[ranking_id] = f"a newer ranking, passed over: {problem}"
    return Lineage(record.name, record, ranking, row, entities, generated_by, damaged)
