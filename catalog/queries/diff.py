"""How one run's ranking and inputs differ from another's."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.queries.candidates import (
    Candidate,
    candidate_rows,
    ranking_frame,
    ranking_node,
)
from matscreen.catalog.queries.nodes import NodeRef, kind_runs, resolve_run
from matscreen.catalog.queries.runs import previous_run
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins
from matscreen.tasks.errors import ArtifactError

#: Entity kinds compared by :func:`diff_runs` as a run's inputs.
INPUT_KINDS = ("campaign_spec", "source_snapshot", "data_split", "feature_table", "model")

log = logging.getLogger(__name__)


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


def diff_runs(catalog: Catalog, artifacts: ArtifactStore, run_a: str, run_b: str) -> RunDiff:
    """Compare the rankings and the inputs of two runs.

    Raises
    ------
    NotFoundError
        If either run, or its ranking, is not in the catalog.
    """
    a, b = resolve_run(catalog, run_a), resolve_run(catalog, run_b)
    ranking_a, ranking_b = ranking_node(catalog, a.id, None), ranking_node(catalog, b.id, None)
    frame_a = ranking_frame(catalog, artifacts, ranking_a).astype({"rank": int})
    frame_b = ranking_frame(catalog, artifacts, ranking_b).astype({"rank": int})
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
        new=candidate_rows(frame_b.drop(index=both.index).sort_values("rank")),
        dropped=candidate_rows(frame_a.drop(index=both.index).sort_values("rank")),
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
        rows = kind_runs(conn, INPUT_KINDS)
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
