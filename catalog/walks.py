"""What the catalog's graph walks share: a connection whose joins keep their written order,
and the runs a node belongs to."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Connection, bindparam, text

from matscreen.catalog.store import Catalog

#: Ids per query of :func:`runs_of` (well under SQLite's and PostgreSQL's parameter limits).
_CHUNK = 500


#: Per transaction on PostgreSQL: joins in their written order, no JIT (see ordered_joins).
_POSTGRESQL_SETTINGS = ("join_collapse_limit = 1", "jit = off")


@contextmanager
def ordered_joins(catalog: Catalog) -> Iterator[Connection]:
    """A connection for graph walks, whose joins run in the order they are written.

    The walks (lineage, impact, show, find) name their tables in the order that suits a
    walk of the graph: from the few rows known (an id, the entities of one kind, the walk so
    far) to the edges that lead on. Left to itself, PostgreSQL orders joins by its
    statistics, which a catalog just written has not gathered yet, and may then start from
    every activity and read every edge they generated: a query of a few milliseconds takes
    a hundred. So joins keep their written order (SQLite keeps the order of a CROSS JOIN),
    and JIT compilation, which costs about 100 ms and pays off only for long queries, is
    off; both for the connection's transaction only.
    """
    with catalog.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            for setting in _POSTGRESQL_SETTINGS:
                conn.exec_driver_sql(f"SET LOCAL {setting}")
        yield conn


# The runs of nodes: the activities that generated or used each (or the node itself, for an
# activity), followed up their parents to the run at the top.
_ROOTS = text(
    """
    WITH RECURSIVE chain(node_id, id, parent_id) AS (
        SELECT e.subject_id, a.id, a.parent_id
        FROM edges e JOIN activities a ON a.id = e.object_id
        WHERE e.relation = 'wasGeneratedBy' AND e.subject_id IN :ids
        UNION
        SELECT e.object_id, a.id, a.parent_id
        FROM edges e JOIN activities a ON a.id = e.subject_id
        WHERE e.relation = 'used' AND e.object_id IN :ids
        UNION
        SELECT a.id, a.id, a.parent_id FROM activities a WHERE a.id IN :ids
        UNION
        SELECT c.node_id, p.id, p.parent_id
        FROM chain c JOIN activities p ON p.id = c.parent_id
    )
    SELECT node_id, id FROM chain WHERE parent_id IS NULL
    """
).bindparams(bindparam("ids", expanding=True))


def runs_of(conn: Connection, ids: Sequence[str]) -> dict[str, set[str]]:
    """For each node id, the runs it belongs to (generated or used by one of their steps)."""
    found: dict[str, set[str]] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        for node_id, run_id in conn.execute(_ROOTS, {"ids": chunk}):
            found.setdefault(node_id, set()).add(run_id)
    return found
