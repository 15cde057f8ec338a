"""Naming catalog nodes (id, id prefix or entity name) and finding the runs they belong to."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, text

from matscreen.catalog.lineage import KIND_ORDER, PER_RECORD_KINDS
from matscreen.catalog.liveness import shown_status
from matscreen.catalog.rules import ENTITY_KINDS
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins
from matscreen.tasks.errors import NotFoundError

log = logging.getLogger(__name__)


CHUNK = 500


_ID_CHARACTERS = frozenset("0123456789abcdef-")


#: The order in which downstream entities are listed: from the source to the result.
_DOWNSTREAM_ORDER = {kind: i for i, kind in enumerate(reversed(KIND_ORDER))}


@dataclass(frozen=True)
class NodeRef:
    """A catalog node, named: ``node_type`` is ``entity`` or ``activity``; ``kind`` is the
    entity kind (``model``) or the activity kind (``flow_run``)."""

    id: str
    node_type: str
    kind: str
    name: str


@dataclass(frozen=True)
class RunSummary:
    """A run: its top-level activity and the name of the campaign spec it followed."""

    id: str
    name: str
    status: str
    started_at: str
    ended_at: str | None
    spec: str | None = None


# -- resolving names ----------------------------------------------------------------------
_BY_ID = text(
    "SELECT id, 'entity', kind, name FROM entities WHERE id = :key "
    "UNION ALL SELECT id, 'activity', kind, name FROM activities WHERE id = :key"
)


_BY_PREFIX = text(
    "SELECT id, 'entity', kind, name FROM entities WHERE id LIKE :prefix "
    "UNION ALL SELECT id, 'activity', kind, name FROM activities WHERE id LIKE :prefix "
    "ORDER BY 1 LIMIT 11"
)


# The kind list lets the (kind, name) index answer a lookup by name alone.
_BY_NAME = text(
    "SELECT id, 'entity', kind, name FROM entities WHERE kind IN :kinds AND name = :name "
    "ORDER BY created_at, id"
).bindparams(bindparam("kinds", expanding=True))


def resolve(catalog: Catalog, id_or_name: str) -> NodeRef:
    """Find the entity or activity meant by a full id, a unique id prefix or a name.

    A name shared by several versions of one record (the source corrected it), and perhaps
    by errors about it, means the record's latest version.

    Raises
    ------
    NotFoundError
        If nothing matches, or several nodes do (the message lists them).
    """
    key = id_or_name.strip()
    with ordered_joins(catalog) as conn:
        found = _refs(conn.execute(_BY_ID, {"key": key}))
        how = "id"
        if not found and len(key) >= 8 and set(key.lower()) <= _ID_CHARACTERS:
            found = _refs(conn.execute(_BY_PREFIX, {"prefix": f"{key.lower()}%"}))
            how = "id prefix"
        if not found:
            found = _refs(conn.execute(_BY_NAME, {"kinds": list(ENTITY_KINDS), "name": key}))
            how = "name"
    if len(found) > 1 and all(n.kind in PER_RECORD_KINDS for n in found):
        # show() lists the other versions.
        records = [n for n in found if n.kind == "structure_record"] or found
        if len({n.kind for n in records}) == 1:
            found = records[-1:]
    if not found:
        raise NotFoundError(
            f"no entity or activity has the id, id prefix (8 characters or more) or name "
            f"{key!r} in {catalog.url_for_display}"
        )
    if len(found) > 1:
        listed = "; ".join(f"{n.kind} {n.name} {n.id}" for n in found[:10])
        more = "" if len(found) <= 10 else " and more"
        raise NotFoundError(f"{how} {key!r} is ambiguous, it matches: {listed}{more}")
    return found[0]


def _refs(rows: Iterable[Any]) -> list[NodeRef]:
    return [NodeRef(row[0], row[1], row[2], row[3]) for row in rows]


def resolve_entity(catalog: Catalog, id_or_name: str, kind: str | None = None) -> NodeRef:
    node = resolve(catalog, id_or_name)
    if node.node_type != "entity" or (kind is not None and node.kind != kind):
        wanted = f"a {kind}" if kind else "an entity"
        raise NotFoundError(f"{id_or_name!r} is the {node.kind} {node.name}, not {wanted}")
    return node


def resolve_run(catalog: Catalog, run_id: str) -> NodeRef:
    node = resolve(catalog, run_id)
    if node.node_type != "activity":
        raise NotFoundError(f"{run_id!r} is the {node.kind} {node.name}, not a run")
    with ordered_joins(catalog) as conn:
        parent = conn.execute(
            text("SELECT parent_id FROM activities WHERE id = :id"), {"id": node.id}
        ).scalar()
    if parent is not None:
        raise NotFoundError(f"{run_id!r} is a {node.kind} inside run {parent}, not a run")
    return node


# -- runs ---------------------------------------------------------------------------------
# Entities of some kinds with the runs they belong to: starting from the (few) entities of
# run-level kinds keeps the walk away from the thousands of records an ingest generates.
_KIND_RUNS = text(
    """
    WITH RECURSIVE
    wanted(id) AS MATERIALIZED (SELECT id FROM entities WHERE kind IN :kinds),
    chain(entity_id, id, parent_id) AS (
        SELECT w.id, a.id, a.parent_id
        FROM wanted w
        CROSS JOIN edges e
        JOIN activities a ON a.id = e.object_id
        WHERE e.subject_id = w.id AND e.relation = 'wasGeneratedBy'
        UNION
        SELECT w.id, a.id, a.parent_id
        FROM wanted w
        CROSS JOIN edges e
        JOIN activities a ON a.id = e.subject_id
        WHERE e.object_id = w.id AND e.relation = 'used'
        UNION
        SELECT c.entity_id, p.id, p.parent_id
        FROM chain c JOIN activities p ON p.id = c.parent_id
    )
    SELECT c.id, en.id, en.kind, en.name, en.created_at
    FROM chain c JOIN entities en ON en.id = c.entity_id
    WHERE c.parent_id IS NULL
    ORDER BY en.created_at, en.id
    """
).bindparams(bindparam("kinds", expanding=True))


def kind_runs(conn: Connection, kinds: Sequence[str]) -> list[tuple[str, NodeRef, str]]:
    """``(run id, entity, created_at)`` for every entity of ``kinds`` and each of its runs."""
    rows = conn.execute(_KIND_RUNS, {"kinds": list(kinds)})
    return [(row[0], NodeRef(row[1], "entity", row[2], row[3]), row[4]) for row in rows]


def run_summaries(conn: Connection, run_ids: Iterable[str]) -> list[RunSummary]:
    ids = sorted(set(run_ids))
    if not ids:
        return []
    specs: dict[str, str] = {}
    for run_id, spec, _ in kind_runs(conn, ["campaign_spec"]):
        specs.setdefault(run_id, spec.name)
    query = text(
        "SELECT id, name, status, started_at, ended_at, host, parameters FROM activities "
        "WHERE id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    runs = []
    for start in range(0, len(ids), CHUNK):
        for row in conn.execute(query, {"ids": ids[start : start + CHUNK]}):
            status = shown_status(row[2], row[5], json.loads(row[6]))
            runs.append(RunSummary(row[0], row[1], status, row[3], row[4], specs.get(row[0])))
    return sorted(runs, key=lambda run: (run.started_at, run.id))


def sorted_downstream(refs: Iterable[NodeRef]) -> list[NodeRef]:
    last = len(_DOWNSTREAM_ORDER)
    return sorted(refs, key=lambda n: (_DOWNSTREAM_ORDER.get(n.kind, last), n.name, n.id))
