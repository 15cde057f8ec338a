"""Candidates of a ranking, found by formula, rank or criterion."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.queries.nodes import NodeRef, kind_runs, resolve_entity, resolve_run
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins
from matscreen.tasks.errors import NotFoundError
from matscreen.tasks.tables import parquet_to_frame


@dataclass(frozen=True)
class Candidate:
    """One ranked candidate: its row of the ranking table.

    ``margin`` is its smallest criterion margin: under the campaign's criteria as stored, or
    under other criteria when the rows come from
    :func:`matscreen.tasks.rank.criteria.meeting_criteria`; ``meets_criteria`` is the
    ranking's own verdict.
    """

    id: str
    formula: str
    rank: int
    meets_criteria: bool
    margin: float
    predictions: dict[str, float]


def find_candidates(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str | None = None,
    ranking_id: str | None = None,
    every: bool = False,
) -> list[Candidate]:
    """Candidates of a ranking that meet its campaign's criteria (or all with ``every``),
    best ranked first.

    Other criteria are ranking semantics: see
    :func:`matscreen.tasks.rank.criteria.meeting_criteria` on :func:`ranking_table`.

    Parameters
    ----------
    run_id
        The run whose ranking to read; default the latest ranking in the catalog.
    ranking_id
        A ranking entity to read instead of a run's.

    Raises
    ------
    NotFoundError
        If the run or ranking is not in the catalog.
    """
    _, frame = ranking_table(catalog, artifacts, run_id, ranking_id)
    if not every:
        frame = frame[frame["meets_criteria"].to_numpy(dtype=bool)]
    return candidate_rows(frame.sort_values("rank"))


def ranking_table(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str | None = None,
    ranking_id: str | None = None,
) -> tuple[str, pd.DataFrame]:
    """The id and stored table of a run's ranking (default the latest in the catalog), or
    of the ranking ``ranking_id``; one row per candidate, indexed by candidate id.

    Raises
    ------
    NotFoundError
        If the run or ranking is not in the catalog.
    """
    ranking = ranking_node(catalog, run_id, ranking_id)
    return ranking.id, ranking_frame(catalog, artifacts, ranking)


def candidate_rows(rows: pd.DataFrame) -> list[Candidate]:
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


def ranking_node(catalog: Catalog, run_id: str | None, ranking_id: str | None) -> NodeRef:
    """The ranking ``ranking_id``, else the latest ranking of run ``run_id``, else the
    latest ranking in the catalog.

    Raises
    ------
    NotFoundError
        If the ranking or run is not in the catalog, or holds no ranking.
    """
    if ranking_id is not None:
        return resolve_entity(catalog, ranking_id, "ranking")
    run = resolve_run(catalog, run_id) if run_id is not None else None
    with ordered_joins(catalog) as conn:
        rankings = [
            (created, ref)
            for run_of, ref, created in kind_runs(conn, ["ranking"])
            if run is None or run_of == run.id
        ]
    if not rankings:
        where = f"run {run.id}" if run is not None else catalog.url_for_display
        raise NotFoundError(f"no ranking in {where}")
    return max(rankings, key=lambda pair: (pair[0], pair[1].id))[1]


def ranking_frame(catalog: Catalog, artifacts: ArtifactStore, ranking: NodeRef) -> pd.DataFrame:
    entity = catalog.get_entity(ranking.id)
    return parquet_to_frame(artifacts.get_bytes(entity.attributes["artifact_sha256"]))
