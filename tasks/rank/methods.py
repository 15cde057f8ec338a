"""The ranking methods a campaign may choose: margin, probability and Pareto fronts.

Every method returns the same table: the candidates with their per-criterion margins
(``margin_<property>``, ``margin``, ``meets_criteria``), the probability columns
(``p_<property>``, ``p_success``) where they are computed, ``front`` for Pareto, and
``rank`` (1 = best), sorted by rank. Ties are decided the same way everywhere: scores that
agree to 1e-9 are equal, and equal candidates go by id.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.criteria import prediction_column, rank_candidates
from matscreen.tasks.rank.order import order_by
from matscreen.tasks.rank.pareto import pareto_fronts
from matscreen.tasks.rank.probability import (
    SUCCESS_COLUMN,
    probability_column,
    property_ranges,
    success_probability,
)
from matscreen.tasks.spec import CriterionSpec, RankingSpec

#: Column of the Pareto front number (1 = non-dominated).
FRONT_COLUMN = "front"


def rank_by_probability(
    candidates: pd.DataFrame,
    criteria: list[CriterionSpec],
    interval_level: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Rank candidates by their probability of meeting every criterion, highest first.

    Candidates whose probabilities agree to 1e-9 (often many that are all but certain to
    fail) are ordered by their smallest margin, then by id.

    Parameters
    ----------
    candidates
        ``id``, ``formula``, ``pred_<property>`` and one form of uncertainty per property
        (see :mod:`matscreen.tasks.rank.probability`).
    criteria
        The campaign's criteria.
    interval_level
        Coverage level of interval columns, one for all properties or one per property.

    Returns
    -------
    pandas.DataFrame
        The ranking (see the module documentation).

    Raises
    ------
    RankingError
        If predictions or uncertainty are missing (see
        :func:`~matscreen.tasks.rank.probability.success_probability`).
    """
    scored = success_probability(rank_candidates(candidates, criteria), criteria, interval_level)
    return order_by(scored, [(SUCCESS_COLUMN, True), ("margin", True)])


def _margins_by_property(ranked: pd.DataFrame, criteria: list[CriterionSpec]) -> np.ndarray:
    """Signed distance to the nearest bound of each property's (intersected) range."""
    columns = []
    for prop, (low, high) in property_ranges(criteria).items():
        values = ranked[prediction_column(prop)].to_numpy(dtype=float)
        columns.append(np.minimum(values - low, high - values))
    return np.column_stack(columns)


def rank_pareto(
    candidates: pd.DataFrame,
    criteria: list[CriterionSpec],
    objective: str = "probability",
    interval_level: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Rank candidates by Pareto front of their per-property objectives, front 1 first.

    Parameters
    ----------
    candidates
        As for :func:`rank_by_probability`; uncertainty is needed only for the
        ``probability`` objective.
    criteria
        The campaign's criteria; one objective per property they name.
    objective
        ``probability``: each property's ``p_<property>``; inside a front, candidates go
        by ``p_success``, then by margin. ``margin``: each property's signed distance to
        the nearest bound of its range; inside a front, candidates go by the smallest
        margin.
    interval_level
        Coverage level of interval columns (``probability`` objective only).

    Returns
    -------
    pandas.DataFrame
        The ranking with its ``front`` column.

    Raises
    ------
    RankingError
        If the objective is unknown, or predictions or uncertainty are missing.
    """
    ranked = rank_candidates(candidates, criteria)
    if objective == "probability":
        ranked = success_probability(ranked, criteria, interval_level)
        values = ranked[[probability_column(p) for p in property_ranges(criteria)]].to_numpy()
        keys = [(FRONT_COLUMN, False), (SUCCESS_COLUMN, True), ("margin", True)]
    elif objective == "margin":
        values = _margins_by_property(ranked, criteria)
        keys = [(FRONT_COLUMN, False), ("margin", True)]
    else:
        raise RankingError(f"ranking: unknown Pareto objective {objective!r}")
    ranked[FRONT_COLUMN] = pareto_fronts(values)
    return order_by(ranked, keys)


def rank_with(
    candidates: pd.DataFrame,
    criteria: list[CriterionSpec],
    ranking: RankingSpec,
    interval_level: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Rank candidates by the method a campaign's ranking spec names.

    Parameters
    ----------
    candidates
        ``id``, ``formula``, ``pred_<property>`` and, for the probability-based methods,
        uncertainty columns.
    criteria
        The campaign's criteria.
    ranking
        The campaign's ranking spec.
    interval_level
        Coverage level of the interval columns (one, or one per property): the level
        they were computed at, which is ``ranking.interval_level`` when the spec sets it
        and each model's own level otherwise.

    Returns
    -------
    pandas.DataFrame
        The ranking, sorted by rank.

    Raises
    ------
    RankingError
        If predictions or uncertainty the method needs are missing.
    """
    if ranking.method == "margin":
        return rank_candidates(candidates, criteria)
    if ranking.method == "probability":
        return rank_by_probability(candidates, criteria, interval_level)
    return rank_pareto(candidates, criteria, ranking.pareto_objective, interval_level)
