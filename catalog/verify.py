"""Checking a whole matscreen home, like ``git fsck``: the catalog, artifacts, feature parts, runs.

What is checked, and what ``repair`` does about it:

- every entity's id is the hash of its content (a row edited in the database, behind the
  triggers' back, no longer matches) — reported, never repaired: a correction is a new entity;
- every node has its row of the right type and every row its node, every entity the
  edge to the step that generated it; SQLite's own integrity and foreign-key checks —
  reported;
- the append-only triggers are in place — repaired by creating the missing ones;
- every artifact an entity names is present and matches its sha256 — a corrupt one is
  quarantined (a run that computes it again stores it anew); a missing one is reported;
- every feature part matches the checksum in its name — a bad one is quarantined (its rows
  are computed again by the next run that needs them);
- runs recorded as ``running`` whose process on this host is gone — marked ``crashed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, text

from matscreen.catalog import schema
from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.features import FeatureStore
from matscreen.catalog.nodes import Entity
from matscreen.catalog.store import Catalog
from matscreen.tasks.hashing import content_hash

#: Entities read per batch while their ids are checked.
_BATCH = 5000


@dataclass(frozen=True)
class Finding:
    """One problem: where (``catalog``, ``artifact``, ``features``, ``run``), what, and what
    was done about it (None when it is only reported)."""

    area: str
    subject: str
    problem: str
    repaired: str | None = None


@dataclass
class Verification:
    """What a check looked at (counts by kind) and what it found."""

    checked: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Finding]:
        """The findings nothing was done about."""
        return [f for f in self.findings if f.repaired is None]


def verify_home(
    catalog: Catalog, artifacts: ArtifactStore, feature_root: Path, repair: bool = False
) -> Verification:
    """Check a catalog with its artifact and feature stores; repair what can be repaired."""
    result = Verification()
    _check_entities(catalog, result)
    _check_nodes(catalog, result)
    _check_triggers(catalog, result, repair)
    _check_artifacts(catalog, artifacts, result, repair)
    _check_feature_parts(feature_root, result, repair)
    _check_runs(catalog, result, repair)
    return result


def _check_entities(catalog: Catalog, result: Verification) -> None:
    table = schema.entities
    query = select(table.c.id, table.c.kind, table.c.name, table.c.attributes)
    count = 0
    with catalog.engine.connect() as conn:
        for rows in conn.execution_options(yield_per=_BATCH).execute(query).partitions():
            for row in rows:
                count += 1
                try:
                    rebuilt = Entity.new(row.kind, row.name, json.loads(row.attributes)).id
                except ValueError as exc:
                    rebuilt = f"unreadable attributes ({exc})"
                if rebuilt != row.id:
                    result.findings.append(
                        Finding(
                            "catalog",
                            f"entity {row.id} ({row.kind} {row.name})",
                            "its content does not match its id: changed in the database",
                        )
                    )
    result.checked["entities"] = count


_NODE_CHECKS = {
    # Every entity is stored by the step that generated it, with that edge, in one
    # transaction: an entity without one lost it.
    "an entity without its wasGeneratedBy edge (deleted from the database)": (
        "SELECT e.id, 'entity' FROM entities e WHERE NOT EXISTS (SELECT 1 FROM edges g "
        "WHERE g.subject_id = e.id AND g.relation = 'wasGeneratedBy')"
    ),
    "a node without its row": (
        "SELECT n.id, n.node_type FROM nodes n WHERE NOT EXISTS "
        "(SELECT 1 FROM entities WHERE id = n.id) AND NOT EXISTS "
        "(SELECT 1 FROM activities WHERE id = n.id) AND NOT EXISTS "
        "(SELECT 1 FROM agents WHERE id = n.id)"
    ),
    **{
        f"a row of {table} without its {kind} node": (
            f"SELECT t.id, '{kind}' FROM {table} t LEFT JOIN nodes n ON n.id = t.id "
            f"WHERE n.id IS NULL OR n.node_type <> '{kind}'"
        )
        for table, kind in (("entities", "entity"), ("activities", "activity"), ("agents", "agent"))
    },
}


def _check_nodes(catalog: Catalog, result: Verification) -> None:
    with catalog.engine.connect() as conn:
        for problem, query in _NODE_CHECKS.items():
            for node_id, kind in conn.execute(text(query)):
                result.findings.append(Finding("catalog", f"{kind} {node_id}", problem))
        result.checked["nodes"] = int(conn.execute(text("SELECT count(*) FROM nodes")).scalar())
        result.checked["edges"] = int(conn.execute(text("SELECT count(*) FROM edges")).scalar())
        if catalog.dialect == "sqlite":
            for row in conn.execute(text("PRAGMA foreign_key_check")):
                result.findings.append(
                    Finding(
                        "catalog", f"row {row[1]} of {row[0]}", f"dangling reference to {row[2]}"
                    )
                )
            status = conn.execute(text("PRAGMA quick_check")).scalar()
            if status != "ok":
                result.findings.append(
                    Finding("catalog", "database file", f"quick_check: {status}")
                )


def _trigger_names(catalog: Catalog) -> set[str]:
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        if catalog.dialect == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    )
    with catalog.engine.connect() as conn:
        return {row[0] for row in conn.execute(text(query))}


def _expected_triggers(dialect: str) -> set[str]:
    if dialect == "sqlite":
        names = {f"{t}_no_{op}" for t in schema.APPEND_ONLY for op in ("update", "delete")}
        return names | {"activities_no_delete", "activities_end_once"}
    return {f"{t}_immutable" for t in schema.APPEND_ONLY} | {"activities_end_once"}


def _check_triggers(catalog: Catalog, result: Verification, repair: bool) -> None:
    if catalog.dialect not in ("sqlite", "postgresql"):
        return
    missing = sorted(_expected_triggers(catalog.dialect) - _trigger_names(catalog))
    result.checked["triggers"] = len(_expected_triggers(catalog.dialect))
    if not missing:
        return
    done = None
    if repair:
        with catalog.engine.begin() as conn:
            for statement in schema.trigger_sql(catalog.dialect):
                conn.exec_driver_sql(statement)
        done = "created again"
    for name in missing:
        result.findings.append(Finding("catalog", f"trigger {name}", "is missing", done))


def _moved(moved: Path | None) -> str | None:
    return f"quarantined to {moved}" if moved is not None else None


def _check_artifacts(
    catalog: Catalog, artifacts: ArtifactStore, result: Verification, repair: bool
) -> None:
    named: dict[str, str] = {}
    table = schema.entities
    query = select(table.c.id, table.c.kind, table.c.attributes).where(
        table.c.attributes.like('%"artifact_sha256"%')
    )
    with catalog.engine.connect() as conn:
        for row in conn.execute(query):
            sha256 = json.loads(row.attributes).get("artifact_sha256")
            if sha256:
                named.setdefault(sha256, f"{row.kind} {row.id}")
    stored = set(artifacts.stored())
    for sha256 in sorted(set(named) | stored):
        problem = artifacts.problem(sha256)
        if problem is None:
            continue
        owner = named.get(sha256, "referenced by no entity")
        moved = None
        if repair and problem != "missing":
            moved = artifacts.quarantine(sha256, problem)
        result.findings.append(
            Finding(
                "artifact", str(artifacts.path_for(sha256)), f"{problem} ({owner})", _moved(moved)
            )
        )
    result.checked["artifacts"] = len(set(named) | stored)


def _check_feature_parts(feature_root: Path, result: Verification, repair: bool) -> None:
    parts = 0
    root = Path(feature_root)
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in folders:
        description = folder / "featurization.json"
        try:
            config = json.loads(description.read_text())
            if content_hash(config) != folder.name:
                raise ValueError("it does not match the folder's hash")
        except (OSError, ValueError) as exc:
            result.findings.append(
                Finding(
                    "features",
                    str(description),
                    f"unreadable ({exc}); the next run of this featurization writes it again",
                )
            )
        store = FeatureStore.in_folder(folder)
        for part, problem, moved in store.damaged_parts(repair=repair):
            result.findings.append(Finding("features", str(part), problem, _moved(moved)))
        parts += len(store.part_files())
    result.checked["feature parts"] = parts


def _check_runs(catalog: Catalog, result: Verification, repair: bool) -> None:
    with catalog.engine.connect() as conn:
        result.checked["activities"] = int(
            conn.execute(text("SELECT count(*) FROM activities")).scalar()
        )
    dead = catalog.dead_runs()
    marked = set(catalog.mark_crashed()) if repair and dead else set()
    for run_id, name in dead:
        result.findings.append(
            Finding(
                "run",
                f"{name} {run_id}",
                "recorded as running, but its process is gone",
                "marked crashed" if run_id in marked else None,
            )
        )
