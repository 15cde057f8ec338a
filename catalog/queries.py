"""Provenance questions asked of the catalog: impact, runs, models, candidates, run diffs, show.

Each question is a plain function over a :class:`Catalog` returning small dataclasses, for
the command line and for scripts. Nodes are named by full id, by a unique id prefix of at
least 8 characters, or (entities) by name, e.g. the record name ``cmr_perovskites:16025``.

A *run* is a top-level activity (no parent): in a campaign, its ``flow_run``. An entity
belongs to the runs whose activities generated it or, having arrived at content already
stored, used it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, bindparam, text

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.lineage import KIND_ORDER, PER_RECORD_KINDS, PER_RECORD_SQL
from matscreen.catalog.liveness import shown_status
from matscreen.catalog.rules import ENTITY_KINDS
from matscreen.catalog.store import Catalog, Entity
from matscreen.catalog.walks import ordered_joins, runs_of
from matscreen.tasks.errors import ArtifactError, NotFoundError
from matscreen.tasks.rank.criteria import criterion_margin, prediction_column
from matscreen.tasks.spec import CriterionSpec
from matscreen.tasks.tables import parquet_to_frame

log = logging.getLogger(__name__)

#: Entity kinds compared by :func:`diff_runs` as a run's inputs.
INPUT_KINDS = ("campaign_spec", "source_snapshot", "data_split", "feature_table", "model")

#: The order in which downstream entities are listed: from the source to the result.
_DOWNSTREAM_ORDER = {kind: i for i, kind in enumerate(reversed(KIND_ORDER))}
_CHUNK = 500
_ID_CHARACTERS = frozenset("0123456789abcdef-")
_MAX_ITEMS = 8
_MAX_TEXT = 200


# -- results ------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class ModelSummary:
    """A trained model, its held-out metrics, and the runs and sources it came from."""

    id: str
    name: str
    target: str
    algorithm: str
    metrics: dict[str, Any]
    artifact_sha256: str
    created_at: str
    runs: list[str]
    sources: list[str]


@dataclass(frozen=True)
class Candidate:
    """One ranked candidate: its row of the ranking table.

    ``margin`` is the smallest criterion margin under the criteria asked for (the ranking's
    own when none were given); ``meets_criteria`` is the ranking's own verdict.
    """

    id: str
    formula: str
    rank: int
    meets_criteria: bool
    margin: float
    predictions: dict[str, float]


@dataclass(frozen=True)
class RankMove:
    """A candidate ranked in both runs at different places; ``delta`` is ``rank_b - rank_a``
    (negative: it moved up)."""

    id: str
    rank_a: int
    rank_b: int
    delta: int


@dataclass(frozen=True)
class InputChange:
    """Inputs of one kind that only one of two runs had."""

    kind: str
    only_a: list[NodeRef]
    only_b: list[NodeRef]


@dataclass(frozen=True)
class RunDiff:
    """How run b's ranking differs from run a's, and which inputs differ.

    Attributes
    ----------
    new, dropped
        Candidates only in b (b's rows, by rank in b) and only in a (a's rows, by rank in a).
    new_hits, dropped_hits
        Ids of candidates ranked in both whose verdict changed: meeting every criterion in
        b but not in a (by rank in b), and the reverse (by rank in a).
    moves
        Candidates ranked in both at different places, the largest moves first (ties by
        rank in b).
    unchanged
        How many candidates kept their rank.
    inputs
        Per input kind (:data:`INPUT_KINDS`) whose entities differ, what only one run had.
    """

    run_a: str
    run_b: str
    ranking_a: NodeRef
    ranking_b: NodeRef
    new: list[Candidate]
    dropped: list[Candidate]
    new_hits: list[str]
    dropped_hits: list[str]
    moves: list[RankMove]
    unchanged: int
    inputs: list[InputChange]


@dataclass(frozen=True)
class Related:
    """Nodes on the other end of one relation: the first few of each kind, and totals."""

    nodes: list[NodeRef] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def omitted(self) -> dict[str, int]:
        """How many of each kind are counted but not listed."""
        listed = Counter(node.kind for node in self.nodes)
        return {k: n - listed[k] for k, n in self.totals.items() if n > listed[k]}


@dataclass(frozen=True)
class Shown:
    """One node with its attributes and neighbours.

    ``relations`` holds, for an entity: ``generated by``, ``derived from``, ``used by``,
    ``derived into``, ``alternates``, ``attributed to`` and, for a structure record or record
    error, ``other versions`` (other entities of the same name: the same record read with
    other content); for an activity: ``used``, ``generated``, ``children``, ``associated
    with``. Bulky attribute values (long lists, structures, long texts) are summarized.
    """

    node: NodeRef
    attributes: dict[str, Any]
    runs: list[RunSummary]
    relations: dict[str, Related]


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


def _resolve_entity(catalog: Catalog, id_or_name: str, kind: str | None = None) -> NodeRef:
    node = resolve(catalog, id_or_name)
    if node.node_type != "entity" or (kind is not None and node.kind != kind):
        wanted = f"a {kind}" if kind else "an entity"
        raise NotFoundError(f"{id_or_name!r} is the {node.kind} {node.name}, not {wanted}")
    return node


def _resolve_run(catalog: Catalog, run_id: str) -> NodeRef:
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


def _kind_runs(conn: Connection, kinds: Sequence[str]) -> list[tuple[str, NodeRef, str]]:
    """``(run id, entity, created_at)`` for every entity of ``kinds`` and each of its runs."""
    rows = conn.execute(_KIND_RUNS, {"kinds": list(kinds)})
    return [(row[0], NodeRef(row[1], "entity", row[2], row[3]), row[4]) for row in rows]


def _run_summaries(conn: Connection, run_ids: Iterable[str]) -> list[RunSummary]:
    ids = sorted(set(run_ids))
    if not ids:
        return []
    specs: dict[str, str] = {}
    for run_id, spec, _ in _kind_runs(conn, ["campaign_spec"]):
        specs.setdefault(run_id, spec.name)
    query = text(
        "SELECT id, name, status, started_at, ended_at, host, parameters FROM activities "
        "WHERE id IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    runs = []
    for start in range(0, len(ids), _CHUNK):
        for row in conn.execute(query, {"ids": ids[start : start + _CHUNK]}):
            status = shown_status(row[2], row[5], json.loads(row[6]))
            runs.append(RunSummary(row[0], row[1], status, row[3], row[4], specs.get(row[0])))
    return sorted(runs, key=lambda run: (run.started_at, run.id))


# -- impact -------------------------------------------------------------------------------
#: Entity kinds of which a run holds a few (everything but the per-record kinds).
_RUN_LEVEL_KINDS = tuple(kind for kind in ENTITY_KINDS if kind not in PER_RECORD_KINDS)

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
    start = _resolve_entity(catalog, entity_id)
    with ordered_joins(catalog) as conn:
        start_runs = runs_of(conn, [start.id]).get(start.id, set())
        scoped = sorted(
            {ref.id for run, ref, _ in _kind_runs(conn, _RUN_LEVEL_KINDS) if run in start_runs}
        )
        rows = conn.execute(_IMPACT, {"start": start.id, "scoped": scoped}).all()
        per_record = {kind: count for node_id, kind, count in rows if not node_id}
        ids = [node_id for node_id, _, _ in rows if node_id]
        entities = _sorted_downstream(_entity_refs(conn, ids))
        roots = runs_of(conn, ids)
        runs = _run_summaries(conn, set().union(*roots.values()))
    by_node = {node_id: sorted(roots.get(node_id, ())) for node_id in ids}
    return Impact(start, entities, per_record, runs, by_node)


def _entity_refs(conn: Connection, ids: Sequence[str]) -> list[NodeRef]:
    query = text("SELECT id, kind, name FROM entities WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    refs = []
    for start in range(0, len(ids), _CHUNK):
        rows = conn.execute(query, {"ids": list(ids[start : start + _CHUNK])})
        refs += [NodeRef(row[0], "entity", row[1], row[2]) for row in rows]
    return refs


def _sorted_downstream(refs: Iterable[NodeRef]) -> list[NodeRef]:
    last = len(_DOWNSTREAM_ORDER)
    return sorted(refs, key=lambda n: (_DOWNSTREAM_ORDER.get(n.kind, last), n.name, n.id))


# -- finding runs and models --------------------------------------------------------------
def find_runs(
    catalog: Catalog,
    database_version: str | None = None,
    source: str | None = None,
    snapshot_sha256: str | None = None,
    model_sha256: str | None = None,
    spec: str | None = None,
    status: str | None = None,
) -> list[RunSummary]:
    """Campaign runs that read a given source snapshot or produced a given model.

    Every filter given must hold; with none, every run is listed.

    Parameters
    ----------
    database_version
        A database release as the source reported it (e.g. Materials Project's).
    source
        A source name as in the campaign spec, or a source kind (``mp``, ``csv_cif`` …).
    snapshot_sha256
        The sha256 of what was read (the file's bytes), or its first 8 or more characters.
    model_sha256
        The sha256 of a model file (``artifact_sha256``), or a model's entity id; a prefix
        of 8 or more characters will do.
    spec
        The campaign spec's name.
    status
        ``running``, ``completed``, ``failed``, ``interrupted`` or ``crashed``.

    Returns
    -------
    list of RunSummary
        By start time.

    Raises
    ------
    NotFoundError
        If a sha256 prefix is shorter than 8 characters.
    """
    for given in (snapshot_sha256, model_sha256):
        if given is not None and len(given) < 8:
            raise NotFoundError(f"sha256 prefix {given!r} is too short: give 8 characters or more")
    with ordered_joins(catalog) as conn:
        selected: set[str] | None = None
        if any(v is not None for v in (database_version, source, snapshot_sha256)):
            snapshots = _kind_runs(conn, ["source_snapshot"])
            wanted = {
                e.id
                for e in catalog.get_entities(sorted({ref.id for _, ref, _ in snapshots}))
                if _snapshot_matches(e, database_version, source, snapshot_sha256)
            }
            selected = {run for run, ref, _ in snapshots if ref.id in wanted}
        if model_sha256 is not None:
            models = _kind_runs(conn, ["model"])
            wanted = {
                e.id
                for e in catalog.get_entities(sorted({ref.id for _, ref, _ in models}))
                if e.id.startswith(model_sha256)
                or str(e.attributes.get("artifact_sha256", "")).startswith(model_sha256)
            }
            runs = {run for run, ref, _ in models if ref.id in wanted}
            selected = runs if selected is None else selected & runs
        if selected is None:
            selected = {
                row[0]
                for row in conn.execute(text("SELECT id FROM activities WHERE parent_id IS NULL"))
            }
        found = _run_summaries(conn, selected)
    return [
        run
        for run in found
        if (spec is None or run.spec == spec) and (status is None or run.status == status)
    ]


def _snapshot_matches(
    snapshot: Entity, database_version: str | None, source: str | None, sha256: str | None
) -> bool:
    a = snapshot.attributes
    return (
        (database_version is None or a.get("database_version") == database_version)
        and (source is None or source in (a.get("source"), a.get("kind"), snapshot.name))
        and (sha256 is None or str(a.get("sha256", "")).startswith(sha256))
    )


def find_models(
    catalog: Catalog, source: str | None = None, target: str | None = None
) -> list[ModelSummary]:
    """Models trained on data from a source, or on a target property.

    A model's sources are the sources its runs read (a campaign trains on every record it
    read, from all of its sources).

    Parameters
    ----------
    source
        A source name as in the campaign spec, or a source kind.
    target
        The predicted property (``band_gap``).

    Returns
    -------
    list of ModelSummary
        Oldest first.
    """
    with ordered_joins(catalog) as conn:
        model_runs = _kind_runs(conn, ["model"])
        snapshot_runs = _kind_runs(conn, ["source_snapshot"])
    snapshots = {e.id: e for e in catalog.get_entities(sorted({r.id for _, r, _ in snapshot_runs}))}
    read_by: dict[str, set[str]] = {}
    for run, ref, _ in snapshot_runs:
        read_by.setdefault(run, set()).add(ref.id)
    runs_of: dict[str, set[str]] = {}
    for run, ref, _ in model_runs:
        runs_of.setdefault(ref.id, set()).add(run)
    found = []
    for model in sorted(catalog.get_entities(sorted(runs_of)), key=lambda e: (e.created_at, e.id)):
        a = model.attributes
        read = [snapshots[i] for run in runs_of[model.id] for i in read_by.get(run, ())]
        if target is not None and a.get("target") != target:
            continue
        if source is not None and not any(_snapshot_matches(s, None, source, None) for s in read):
            continue
        found.append(
            ModelSummary(
                id=model.id,
                name=model.name,
                target=a.get("target", ""),
                algorithm=a.get("algorithm", ""),
                metrics=a.get("metrics", {}),
                artifact_sha256=a.get("artifact_sha256", ""),
                created_at=model.created_at,
                runs=sorted(runs_of[model.id]),
                sources=sorted({s.name for s in read}),
            )
        )
    return found


# -- candidates ---------------------------------------------------------------------------
def find_candidates(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str | None = None,
    criteria: Sequence[CriterionSpec | Mapping[str, Any]] | None = None,
    ranking_id: str | None = None,
) -> list[Candidate]:
    """Candidates of a ranking that pass the given criteria, best ranked first.

    Parameters
    ----------
    run_id
        The run whose ranking to read; default the latest ranking in the catalog.
    criteria
        Ranges on predicted properties (``{"property": "band_gap", "min": 1.1}``); default
        the ranking's own verdict (the campaign's criteria); an empty list passes every
        candidate.
    ranking_id
        A ranking entity to read instead of a run's.

    Raises
    ------
    NotFoundError
        If the run or ranking is not in the catalog, or a criterion names a property the
        ranking has no predictions of.
    """
    ranking = _ranking(catalog, run_id, ranking_id)
    frame = _ranking_frame(catalog, artifacts, ranking)
    if not criteria:
        margins = frame["margin"].to_numpy(dtype=float)
        passed = frame["meets_criteria"].to_numpy(dtype=bool) if criteria is None else None
    else:
        per_criterion = []
        for spec in (_criterion(c) for c in criteria):
            column = prediction_column(spec.property)
            if column not in frame.columns:
                have = sorted(c[5:] for c in frame.columns if c.startswith("pred_"))
                raise NotFoundError(
                    f"ranking {ranking.id} has no predictions of {spec.property!r} "
                    f"(it has: {', '.join(have)})"
                )
            per_criterion.append(criterion_margin(frame[column].to_numpy(dtype=float), spec))
        margins = np.minimum.reduce(per_criterion)
        passed = margins >= 0
    chosen = frame.assign(margin=margins)
    if passed is not None:
        chosen = chosen[passed]
    return _candidates(chosen.sort_values("rank"))


def _criterion(value: CriterionSpec | Mapping[str, Any]) -> CriterionSpec:
    if isinstance(value, CriterionSpec):
        return value
    return CriterionSpec.model_validate({"unit": "", **value})


def _candidates(rows: pd.DataFrame) -> list[Candidate]:
    """Candidates from rows of a ranking table, in the rows' order."""
    predictions = [c for c in rows.columns if str(c).startswith("pred_")]
    return [
        Candidate(
            id=str(candidate_id),
            formula=str(row.get("formula", "")),
            rank=int(row["rank"]),
            meets_criteria=bool(row["meets_criteria"]),
            margin=float(row["margin"]),
            predictions={str(c)[5:]: float(row[c]) for c in predictions},
        )
        for candidate_id, row in zip(rows.index, rows.to_dict("records"), strict=True)
    ]


def _ranking(catalog: Catalog, run_id: str | None, ranking_id: str | None) -> NodeRef:
    if ranking_id is not None:
        return _resolve_entity(catalog, ranking_id, "ranking")
    run = _resolve_run(catalog, run_id) if run_id is not None else None
    with ordered_joins(catalog) as conn:
        rankings = [
            (created, ref)
            for run_of, ref, created in _kind_runs(conn, ["ranking"])
            if run is None or run_of == run.id
        ]
    if not rankings:
        where = f"run {run.id}" if run is not None else catalog.url_for_display
        raise NotFoundError(f"no ranking in {where}")
    return max(rankings, key=lambda pair: (pair[0], pair[1].id))[1]


def _ranking_frame(catalog: Catalog, artifacts: ArtifactStore, ranking: NodeRef) -> pd.DataFrame:
    entity = catalog.get_entity(ranking.id)
    return parquet_to_frame(artifacts.get_bytes(entity.attributes["artifact_sha256"]))


# -- run diffs ----------------------------------------------------------------------------
def diff_runs(catalog: Catalog, artifacts: ArtifactStore, run_a: str, run_b: str) -> RunDiff:
    """Compare the rankings and the inputs of two runs.

    Raises
    ------
    NotFoundError
        If either run, or its ranking, is not in the catalog.
    """
    a, b = _resolve_run(catalog, run_a), _resolve_run(catalog, run_b)
    ranking_a, ranking_b = _ranking(catalog, a.id, None), _ranking(catalog, b.id, None)
    frame_a = _ranking_frame(catalog, artifacts, ranking_a).astype({"rank": int})
    frame_b = _ranking_frame(catalog, artifacts, ranking_b).astype({"rank": int})
    columns = ["rank", "meets_criteria"]
    both = frame_a[columns].join(frame_b[columns], how="inner", lsuffix="_a", rsuffix="_b")
    both["delta"] = both["rank_b"] - both["rank_a"]
    hit_a, hit_b = both["meets_criteria_a"].astype(bool), both["meets_criteria_b"].astype(bool)
    moved = both[both["delta"] != 0].assign(size=lambda f: f["delta"].abs())
    moved = moved.sort_values(["size", "rank_b"], ascending=[False, True])
    return RunDiff(
        run_a=a.id,
        run_b=b.id,
        ranking_a=ranking_a,
        ranking_b=ranking_b,
        new=_candidates(frame_b.drop(index=both.index).sort_values("rank")),
        dropped=_candidates(frame_a.drop(index=both.index).sort_values("rank")),
        new_hits=[str(i) for i in both[hit_b & ~hit_a].sort_values("rank_b").index],
        dropped_hits=[str(i) for i in both[hit_a & ~hit_b].sort_values("rank_a").index],
        moves=[
            RankMove(str(i), int(ra), int(rb), int(d))
            for i, ra, rb, d in zip(
                moved.index, moved["rank_a"], moved["rank_b"], moved["delta"], strict=True
            )
        ],
        unchanged=int((both["delta"] == 0).sum()),
        inputs=_input_changes(catalog, a.id, b.id),
    )


def stored_model(
    catalog: Catalog, artifacts: ArtifactStore, fingerprint: str
) -> tuple[str, Any] | None:
    """The stored model whose training had this fingerprint, loaded, if there is one.

    See :func:`matscreen.tasks.models.evaluation.training_fingerprint`. A model whose
    artifact is missing or no longer loads is skipped (the caller fits again).

    Returns
    -------
    (model entity id, SurrogateModel) or None
    """
    from matscreen.tasks.errors import ModelError
    from matscreen.tasks.models.surrogate import SurrogateModel

    for model in catalog.find_entities("model"):
        if model.attributes.get("training_fingerprint") != fingerprint:
            continue
        try:
            data = artifacts.get_bytes(model.attributes["artifact_sha256"])
            return model.id, SurrogateModel.from_json(data, f"model {model.id}")
        except (ArtifactError, ModelError) as exc:
            log.warning("model %s is not reused, it is fitted again: %s", model.id, exc)
            continue
    return None


def previous_run(catalog: Catalog, run_id: str, campaign: str) -> RunSummary | None:
    """The latest completed run of the same campaign spec that started before ``run_id``."""
    runs = find_runs(catalog, spec=campaign)  # by start time
    position = next((n for n, run in enumerate(runs) if run.id == run_id), len(runs))
    earlier = [run for run in runs[:position] if run.status == "completed"]
    return earlier[-1] if earlier else None


def changes_since_previous(
    catalog: Catalog, artifacts: ArtifactStore, run_id: str, campaign: str, top: int = 20
) -> dict[str, Any] | None:
    """What changed in a campaign run's ranking since the campaign's previous run.

    Meant for a run whose ranking is recorded but which may still be running. None when
    the campaign has no earlier completed run. When the previous ranking's artifact is
    missing or corrupt (it is then quarantined), the result says so in ``unavailable``
    instead of failing the run.

    Returns
    -------
    dict or None
        ``previous_run``; ``new_candidates`` / ``dropped_candidates`` (counts and the
        ``top`` first ids); ``new_hits`` (candidates meeting every criterion now but not
        before, including new candidates that meet them) and ``dropped_hits`` (the
        reverse, including dropped candidates that met them); ``moves`` (the ``top``
        largest rank moves), ``moved`` and ``unchanged`` counts; ``inputs`` (per input
        kind, how many entities only the previous or only this run used).
    """
    before = previous_run(catalog, run_id, campaign)
    if before is None:
        return None
    try:
        d = diff_runs(catalog, artifacts, before.id, run_id)
    except ArtifactError as exc:
        log.warning("no comparison with the previous run %s: %s", before.id, exc)
        return {
            "previous_run": before.id,
            "previous_started_at": before.started_at,
            "unavailable": str(exc),
        }
    new_hits = [c.id for c in d.new if c.meets_criteria] + d.new_hits
    dropped_hits = [c.id for c in d.dropped if c.meets_criteria] + d.dropped_hits
    return {
        "previous_run": before.id,
        "previous_started_at": before.started_at,
        "new_candidates": {"count": len(d.new), "ids": [c.id for c in d.new[:top]]},
        "dropped_candidates": {"count": len(d.dropped), "ids": [c.id for c in d.dropped[:top]]},
        "new_hits": {"count": len(new_hits), "ids": new_hits[:top]},
        "dropped_hits": {"count": len(dropped_hits), "ids": dropped_hits[:top]},
        "moved": len(d.moves),
        "unchanged": d.unchanged,
        "moves": [asdict(m) for m in d.moves[:top]],
        "inputs": [
            {"kind": c.kind, "only_previous": len(c.only_a), "only_this_run": len(c.only_b)}
            for c in d.inputs
        ],
    }


def _input_changes(catalog: Catalog, run_a: str, run_b: str) -> list[InputChange]:
    with ordered_joins(catalog) as conn:
        rows = _kind_runs(conn, INPUT_KINDS)
    held: dict[str, dict[str, NodeRef]] = {run_a: {}, run_b: {}}
    for run, ref, _ in rows:
        if run in held:
            held[run][ref.id] = ref
    changes = []
    for kind in INPUT_KINDS:
        ids_a = {i for i, ref in held[run_a].items() if ref.kind == kind}
        ids_b = {i for i, ref in held[run_b].items() if ref.kind == kind}
        if ids_a != ids_b:
            only_a = sorted((held[run_a][i] for i in ids_a - ids_b), key=lambda n: (n.name, n.id))
            only_b = sorted((held[run_b][i] for i in ids_b - ids_a), key=lambda n: (n.name, n.id))
            changes.append(InputChange(kind, only_a, only_b))
    return changes


# -- show ---------------------------------------------------------------------------------
_RELATED_SQL = """
SELECT id, kind, name FROM (
    SELECT t.id AS id, t.kind AS kind, t.name AS name, {sort} AS sort_key,
           ROW_NUMBER() OVER (PARTITION BY t.kind ORDER BY {sort}, t.id) AS position
    FROM edges e JOIN {table} t ON t.id = e.{other}
    WHERE e.{this} = :id AND e.relation = :relation
) listed
WHERE position <= :limit
ORDER BY kind, sort_key, id
"""
_TOTALS_SQL = """
SELECT t.kind, COUNT(*) FROM edges e JOIN {table} t ON t.id = e.{other}
WHERE e.{this} = :id AND e.relation = :relation GROUP BY t.kind
"""
#: node type -> (its table, what its rows are listed by)
_TABLES = {
    "entity": ("entities", "t.name"),
    "activity": ("activities", "t.started_at"),
    "agent": ("agents", "t.name"),
}
#: (section, relation, the shown node's end of the edge, the other end's node type)
_ENTITY_SECTIONS = (
    ("generated by", "wasGeneratedBy", "subject", "activity"),
    ("derived from", "wasDerivedFrom", "subject", "entity"),
    ("used by", "used", "object", "activity"),
    ("derived into", "wasDerivedFrom", "object", "entity"),
    ("alternates", "alternateOf", "subject", "entity"),
    ("alternates", "alternateOf", "object", "entity"),
    ("attributed to", "wasAttributedTo", "subject", "agent"),
)
_ACTIVITY_SECTIONS = (
    ("used", "used", "subject", "entity"),
    ("generated", "wasGeneratedBy", "object", "entity"),
    ("associated with", "wasAssociatedWith", "subject", "agent"),
)


def show(catalog: Catalog, id_or_name: str, limit: int = 10) -> Shown:
    """An entity or activity with its attributes and what it is connected to.

    Parameters
    ----------
    id_or_name
        A full id, a unique id prefix (8 characters or more) or an entity's name.
    limit
        How many neighbours of each kind to list per relation; the rest are counted.

    Raises
    ------
    NotFoundError
        If nothing, or more than one node, matches ``id_or_name``.
    """
    node = resolve(catalog, id_or_name)
    relations: dict[str, Related] = {}
    with ordered_joins(catalog) as conn:
        if node.node_type == "entity":
            entity = catalog.get_entity(node.id)
            attributes: dict[str, Any] = {
                **summarize(entity.attributes),
                "created_at": entity.created_at,
            }
            sections = _ENTITY_SECTIONS
        else:
            activity = catalog.get_activity(node.id)
            attributes = {
                "status": activity.status,
                "started_at": activity.started_at,
                "ended_at": activity.ended_at,
                "host": activity.host,
                "prefect_run_id": activity.prefect_run_id,
                "parent_id": activity.parent_id,
                "git_commit": activity.git_commit,
                "parameters": summarize(activity.parameters),
                "software": summarize(activity.software),
            }
            sections = _ACTIVITY_SECTIONS
        for section, relation, end, other_type in sections:
            found = _related(conn, node.id, relation, end, other_type, limit)
            previous = relations.get(section, Related())
            totals = Counter(previous.totals) + Counter(found.totals)
            relations[section] = Related(previous.nodes + found.nodes, dict(totals))
        if node.node_type == "activity":
            relations["children"] = _children(conn, node.id, limit)
        elif node.kind in PER_RECORD_KINDS:
            relations["other versions"] = _other_versions(conn, node, limit)
        runs = _run_summaries(conn, runs_of(conn, [node.id]).get(node.id, set()))
    for section, related in relations.items():
        if related.nodes and related.nodes[0].node_type == "entity":
            relations[section] = Related(_sorted_downstream(related.nodes), related.totals)
    return Shown(node, attributes, runs, relations)


def _related(
    conn: Connection, node_id: str, relation: str, end: str, other_type: str, limit: int
) -> Related:
    this, other = ("subject_id", "object_id") if end == "subject" else ("object_id", "subject_id")
    table, sort = _TABLES[other_type]
    params = {"id": node_id, "relation": relation, "limit": limit}
    names = {"table": table, "sort": sort, "this": this, "other": other}
    rows = conn.execute(text(_RELATED_SQL.format(**names)), params)
    nodes = [NodeRef(row[0], other_type, row[1], row[2]) for row in rows]
    totals = dict(conn.execute(text(_TOTALS_SQL.format(**names)), params).all())
    return Related(nodes, {k: int(v) for k, v in totals.items()})


def _children(conn: Connection, activity_id: str, limit: int) -> Related:
    rows = conn.execute(
        text("SELECT id, kind, name FROM activities WHERE parent_id = :id ORDER BY started_at, id"),
        {"id": activity_id},
    ).all()
    totals = Counter(row[1] for row in rows)
    listed: Counter[str] = Counter()
    nodes = []
    for row in rows:
        listed[row[1]] += 1
        if listed[row[1]] <= limit:
            nodes.append(NodeRef(row[0], "activity", row[1], row[2]))
    return Related(nodes, dict(totals))


def _other_versions(conn: Connection, node: NodeRef, limit: int) -> Related:
    rows = conn.execute(
        text(
            "SELECT id, kind, name FROM entities WHERE kind = :kind AND name = :name "
            "AND id <> :id ORDER BY created_at DESC, id"
        ),
        {"kind": node.kind, "name": node.name, "id": node.id},
    ).all()
    nodes = [NodeRef(row[0], "entity", row[1], row[2]) for row in rows[:limit]]
    return Related(nodes, {node.kind: len(rows)} if rows else {})


def summarize(value: Any) -> Any:
    """Shorten bulky values for display: long lists and texts, and whole structures.

    A list of more than 8 items becomes ``"<n items: a, b, c, …>"``, a text of more than 200
    characters is cut with its length noted, and a pymatgen structure dictionary becomes
    ``"<structure: n sites, formula>"``; everything else is kept, recursively.
    """
    if isinstance(value, Mapping):
        if "lattice" in value and "sites" in value:
            return _structure_summary(value)
        return {str(k): summarize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) > _MAX_ITEMS:
            head = ", ".join(str(v) for v in value[:3])
            if len(head) > _MAX_TEXT:
                head = head[:_MAX_TEXT]
            return f"<{len(value)} items: {head}, …>"
        return [summarize(v) for v in value]
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return f"{value[:_MAX_TEXT]}… ({len(value)} characters)"
    return value


def _structure_summary(structure: Mapping[str, Any]) -> str:
    counts: Counter[str] = Counter()
    for site in structure.get("sites", []):
        for species in site.get("species", []):
            counts[str(species.get("element"))] += species.get("occu", 1.0)
    formula = "".join(
        f"{element}{'' if n == 1 else f'{n:g}'}" for element, n in sorted(counts.items())
    )
    return f"<structure: {len(structure.get('sites', []))} sites, {formula}>"
