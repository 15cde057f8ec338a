"""Candidates of a ranking, found by formula, rank or criterion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.queries.nodes import NodeRef, kind_runs, resolve_entity, resolve_run
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins
from matscreen.tasks.errors import NotFoundError
from matscreen.tasks.rank.criteria import criterion_margin, prediction_column
from matscreen.tasks.spec import CriterionSpec
from matscreen.tasks.tables import parquet_to_frame


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
    ranking = ranking_node(catalog, run_id, ranking_id)
    frame = ranking_frame(catalog, artifacts, ranking)
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
    return candidate_rows(chosen.sort_values("rank"))


def _criterion(value: CriterionSpec | Mapping[str, Any]) -> CriterionSpec:
    if isinstance(value, CriterionSpec):
        return value
    return CriterionSpec.model_validate({"unit": "", **value})


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
