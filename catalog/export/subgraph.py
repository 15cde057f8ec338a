"""The part of the catalog one campaign run made and read, as plain data: its activities,
entities, agents and edges, with secrets masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, text

from matscreen.catalog.export.redaction import redact, redact_json, secret_values
from matscreen.catalog.lineage import RUN_LEVEL_KINDS
from matscreen.catalog.nodes import Activity, Edge, Entity, activity_from_row
from matscreen.catalog.rules import RELATIONS, in_check_sql
from matscreen.catalog.store import Catalog
from matscreen.tasks.errors import NotFoundError


@dataclass(frozen=True)
class AgentNode:
    """A software or person agent of the catalog."""

    id: str
    kind: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSubgraph:
    """One campaign run's activities, the entities they touched and what those came from.

    Attributes
    ----------
    run
        The run's ``flow_run`` activity.
    activities
        The run and every activity inside it (steps, task runs), by start time.
    entities
        Entities the run's activities generated or used, plus every entity reached from
        those by ``wasDerivedFrom`` or ``alternateOf`` edges recorded before the run ended
        (e.g. the snapshot an earlier run read a reused record from, when read with the
        records).
    direct
        Ids of the entities the run's activities generated or used themselves.
    agents
        Agents the activities were associated with and the entities attributed to.
    edges
        Every stored edge between these nodes.
    units
        The unit of every label the run's structure records hold (``{"band_gap": "eV"}``).
    """

    run: Activity
    activities: list[Activity]
    entities: dict[str, Entity]
    direct: frozenset[str]
    agents: dict[str, AgentNode]
    edges: list[Edge]
    units: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str, direct_only: bool = False) -> list[Entity]:
        """Entities of ``kind``, by name; only those the run itself touched if asked."""
        found = [
            e
            for e in self.entities.values()
            if e.kind == kind and (not direct_only or e.id in self.direct)
        ]
        return sorted(found, key=lambda e: (e.name, e.id))

    @cached_property
    def _objects(self) -> dict[tuple[str, str], list[str]]:
        index: dict[tuple[str, str], list[str]] = {}
        for edge in self.edges:
            index.setdefault((edge.relation, edge.subject_id), []).append(edge.object_id)
        return index

    def objects(self, relation: str, subject_id: str) -> list[str]:
        """Ids that ``subject_id`` points to by ``relation`` (e.g. what an entity came from)."""
        return self._objects.get((relation, subject_id), [])


# One set of common table expressions scopes every query to the run: its activities (the
# flow run and, recursively, the activities inside it), the entities they generated or
# used, and everything upstream of those by derivation. The database walks the edges, so
# a run with thousands of records costs a handful of queries, not one per node.
# Entities are shared between runs (same content, same entity), and a later run that
# reads a record again adds a derivation from its own snapshot; edges recorded after the
# run ended are therefore left out, so a run's export stays what it was when it finished.
_ACTIVITIES = """run_activities(id) AS (
    SELECT CAST(:run AS VARCHAR(64))
    UNION
    SELECT a.id FROM activities a JOIN run_activities r ON a.parent_id = r.id
)"""
_WALK = """direct(id) AS (
    SELECT e.subject_id FROM edges e
    WHERE e.relation = 'wasGeneratedBy' AND e.object_id IN (SELECT id FROM run_activities){made}
    UNION
    SELECT e.object_id FROM edges e
    WHERE e.relation = 'used' AND e.subject_id IN (SELECT id FROM run_activities){reads}
),
reached(id) AS (
    SELECT id FROM direct
    UNION
    SELECT e.object_id FROM edges e JOIN reached r ON e.subject_id = r.id
    WHERE e.relation IN ('wasDerivedFrom', 'alternateOf') AND e.recorded_at <= :until{reads}
),
scope(id) AS (SELECT id FROM run_activities UNION SELECT id FROM reached)"""
# Without the records, the walk never enters a per-record entity: a run of a million
# candidates has a million records and millions of edges to them, while a run has a few
# hundred entities of the other kinds. An edge's far end is checked against the catalog's
# list of those (`run_level`), so no record's row is read, only the run's edges in index
# order. The `|| ''` keeps the database from probing the edge index once per entry of
# that list instead: with many runs in the catalog, that would cost more than the scan.
_RUN_LEVEL = (
    f"run_level(id) AS (SELECT id FROM entities WHERE {in_check_sql('kind', RUN_LEVEL_KINDS)})"
)
_AGENT_RELATIONS = ("wasAssociatedWith", "wasAttributedTo")
_NODE_RELATIONS = tuple(r for r in RELATIONS if r not in _AGENT_RELATIONS)
#: With the records the scope holds a million nodes: every scope node's edges are read by
#: the subject index and their other ends checked.
_EDGES_OF_RECORDS = (
    "SELECT e.id, e.relation, e.subject_id, e.object_id FROM edges e "
    "WHERE e.subject_id IN (SELECT id FROM scope) AND e.recorded_at <= :until AND "
    f"({in_check_sql('e.relation', _AGENT_RELATIONS)} OR e.object_id IN (SELECT id FROM scope)) "
    "ORDER BY e.id"
)
#: Without them it holds a few hundred, some with a million edges to records: each pair of
#: scope nodes is looked up in an edge index instead (quadratic in the scope, which stays
#: a few hundred nodes), and each node's agents.
_EDGES_OF_FEW = (
    "SELECT e.id, e.relation, e.subject_id, e.object_id FROM edges e "
    f"WHERE {in_check_sql('e.relation', _NODE_RELATIONS)} "
    "AND e.subject_id IN (SELECT id FROM scope) AND e.object_id IN (SELECT id FROM scope) "
    "AND e.recorded_at <= :until "
    "UNION ALL "
    "SELECT e.id, e.relation, e.subject_id, e.object_id FROM edges e "
    f"WHERE {in_check_sql('e.relation', _AGENT_RELATIONS)} "
    "AND e.subject_id IN (SELECT id FROM scope) AND e.recorded_at <= :until "
    "ORDER BY 1"
)


def _queries(records: bool) -> dict[str, str]:
    """The subgraph's queries; without ``records``, structure records and record errors,
    their edges and what is reached only through them are left out."""
    if records:
        ctes = [_ACTIVITIES, _WALK.format(made="", reads="")]
    else:
        walk = _WALK.format(
            made=" AND (e.subject_id || '') IN (SELECT id FROM run_level)",
            reads=" AND (e.object_id || '') IN (SELECT id FROM run_level)",
        )
        ctes = [_RUN_LEVEL, _ACTIVITIES, walk]
    scope = "WITH RECURSIVE\n" + ",\n".join(ctes)
    queries = {
        "activities": "SELECT a.* FROM activities a WHERE a.id IN (SELECT id FROM run_activities)",
        "direct": "SELECT id FROM direct",
        "entities": "SELECT en.* FROM entities en WHERE en.id IN (SELECT id FROM reached)",
        "edges": _EDGES_OF_RECORDS if records else _EDGES_OF_FEW,
        "agents": (
            "SELECT ag.* FROM agents ag WHERE ag.id IN (SELECT e.object_id FROM edges e "
            f"WHERE {in_check_sql('e.relation', _AGENT_RELATIONS)} "
            "AND e.subject_id IN (SELECT id FROM scope))"
        ),
    }
    return {name: scope + "\n" + query for name, query in queries.items()}


def run_subgraph(catalog: Catalog, run_id: str, records: bool = True) -> RunSubgraph:
    """Read one campaign run's part of the catalog, with secrets masked.

    Parameters
    ----------
    catalog
        The catalog holding the run.
    run_id
        The id of the run's ``flow_run`` activity (the Prefect flow run id).
    records
        Whether to read the structure records and record errors too (PROV exports name
        every one). Without them (a run's crate), the walk does not go through them: the
        records, their edges and an entity reached only through a record (the snapshot
        an earlier run read a reused record from, when nothing else of that run was
        reused) are left out, and the cost no longer grows with the number of records.
        The units of the labels are then read from a few records of each training set.

    Returns
    -------
    RunSubgraph
        Activities, entities, agents and edges of the run; parameters and attributes pass
        through :func:`redact`, so every export built from it is free of secrets.

    Raises
    ------
    NotFoundError
        If ``run_id`` is not an activity of the catalog, or not a campaign (flow) run.
    """
    run = catalog.get_activity(run_id)
    if run.kind != "flow_run":
        raise NotFoundError(f"activity {run_id} is a {run.kind}, not a campaign run")
    # Catalog times are ISO 8601 UTC strings of one format, so they compare as text.
    until = run.ended_at or "9999"
    rows: dict[str, list[Any]] = {}
    with catalog.engine.connect() as conn:
        for name, query in _queries(records).items():
            rows[name] = conn.execute(text(query), {"run": run_id, "until": until}).all()
    secrets = sorted(secret_values(), key=len, reverse=True)
    activities = [activity_from_row(row) for row in rows["activities"]]
    activities = [
        replace(a, parameters=redact(a.parameters, secrets))
        for a in sorted(activities, key=lambda a: (a.id != run_id, a.started_at, a.id))
    ]
    entities = {
        row.id: Entity(
            row.id, row.kind, row.name, redact_json(row.attributes, secrets), row.created_at
        )
        for row in rows["entities"]
    }
    agents = {
        row.id: AgentNode(row.id, row.kind, row.name, redact_json(row.attributes, secrets))
        for row in rows["agents"]
    }
    # Each query sees the catalog as committed when it ran; a run still being written may
    # have gained nodes in between, and edges to nodes read by no query are left out.
    known = {a.id for a in activities} | set(entities) | set(agents)
    if records:
        direct = {row[0] for row in rows["direct"]}
        records_read = [
            e for e in entities.values() if e.kind == "structure_record" and e.id in direct
        ]
        units = _units(e.attributes for e in sorted(records_read, key=lambda e: (e.name, e.id)))
    else:
        units = _training_units(catalog, entities.values())
    return RunSubgraph(
        run=activities[0],
        activities=activities,
        entities=entities,
        direct=frozenset(row[0] for row in rows["direct"]) & set(entities),
        agents=agents,
        edges=[Edge(*row[1:]) for row in rows["edges"] if row[2] in known and row[3] in known],
        units=units,
    )


def _units(attributes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The first unit given for each label in these structure records' attributes."""
    units: dict[str, str] = {}
    for record in attributes:
        for name, unit in record.get("units", {}).items():
            units.setdefault(name, unit)
    return units


#: Records per source read to learn the units of a training set's labels (a source gives
#: every record of it the same units).
UNIT_SAMPLE = 20


def _training_units(catalog: Catalog, entities: Iterable[Entity]) -> dict[str, str]:
    """Units of the labels of the records the run's training sets name, from a few records
    of each source (record ids are ``source:source_id``)."""
    by_source: dict[str, list[str]] = {}
    for entity in entities:
        if entity.kind == "training_set":
            for record_id in entity.attributes.get("ids", []):
                names = by_source.setdefault(str(record_id).split(":", 1)[0], [])
                if len(names) < UNIT_SAMPLE:
                    names.append(str(record_id))
    names = sorted({n for group in by_source.values() for n in group})
    if not names:
        return {}
    query = text(
        "SELECT attributes FROM entities WHERE kind = 'structure_record' AND name IN :names "
        "ORDER BY id"
    ).bindparams(bindparam("names", expanding=True))
    with catalog.engine.connect() as conn:
        rows = conn.execute(query, {"names": names}).all()
    return _units(json.loads(row[0]) for row in rows)
