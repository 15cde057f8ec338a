"""Rank candidates by how safely their predictions meet every criterion.

A criterion's margin is the distance (in the property's unit) from the predicted value to
the nearest bound, positive inside the allowed range and negative outside. A candidate's
margin is its smallest margin over all criteria: it meets the campaign exactly when that is
>= 0, and a larger margin means it would take a larger prediction error to fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.order import order_by
from matscreen.tasks.spec import CriterionSpec


def prediction_column(prop: str) -> str:
    """Name of the column holding the predictions of ``prop``."""
    return f"pred_{prop}"


def candidate_frame(
    ids: list[str], formulas: list[str], predictions: dict[str, list[float]]
) -> pd.DataFrame:
    """Table of candidates to rank: ``id``, ``formula`` and ``pred_<property>`` columns."""
    columns = {prediction_column(prop): values for prop, values in predictions.items()}
    return pd.DataFrame({"id": ids, "formula": formulas, **columns})


def add_intervals(candidates: pd.DataFrame, predictions: dict[str, Any]) -> dict[str, float]:
    """Add each model's uncertainty and applicability domain as columns of the candidates.

    ``predictions`` maps a property to its PredictionRecord-like held-out predictions
    (``ids``, ``lower``, ``upper``, ``level``, and where the model gives them the hurdle
    parts ``probability``, ``gap_pred``, ``gap_lower``, ``gap_upper``, ``metal_value`` and
    the domain parts ``domain_distance``, ``in_domain``). Added, per property:

    - ``lower_<p>`` / ``upper_<p>``: the model's interval;
    - for a two-stage model, the hurdle form of
      :mod:`~matscreen.tasks.rank.probability` (``prob_nonzero_<p>``, ``cond_pred_<p>``,
      ``cond_lower_<p>``, ``cond_upper_<p>``, ``metal_value_<p>``), which the ranking then
      uses instead of the interval;
    - the domain columns of :func:`add_domain`.

    Models without calibrated intervals (``level`` None) add no interval columns: a
    zero-width interval would read as certainty.

    Returns
    -------
    dict
        The coverage level of each property's interval columns.
    """
    from matscreen.tasks.rank.probability import hurdle_columns, lower_column, upper_column

    levels: dict[str, float] = {}
    for prop, p in predictions.items():
        if getattr(p, "level", None) is None or p.lower is None or p.upper is None:
            continue
        order = _order(candidates, p.ids)
        candidates[lower_column(prop)] = np.asarray(p.lower, dtype=float)[order]
        candidates[upper_column(prop)] = np.asarray(p.upper, dtype=float)[order]
        levels[prop] = float(p.level)
        parts = {
            "probability": getattr(p, "probability", None),
            "pred": getattr(p, "gap_pred", None),
            "lower": getattr(p, "gap_lower", None),
            "upper": getattr(p, "gap_upper", None),
        }
        metal_value = getattr(p, "metal_value", None)
        if metal_value is None or any(v is None for v in parts.values()):
            continue
        names = hurdle_columns(prop)
        for role, values in parts.items():
            candidates[names[role]] = np.asarray(values, dtype=float)[order]
        candidates[names["metal_value"]] = float(metal_value)
    add_domain(candidates, predictions)
    return levels


def domain_distance_column(prop: str) -> str:
    """Name of the column holding each candidate's distance to ``prop``'s training rows."""
    return f"domain_distance_{prop}"


#: Column telling whether every model places the candidate in its applicability domain.
IN_DOMAIN_COLUMN = "in_domain"


def add_domain(candidates: pd.DataFrame, predictions: dict[str, Any]) -> None:
    """Add ``domain_distance_<p>`` per model and ``in_domain`` (every model agrees).

    Models without an applicability domain (``domain_distance`` None) add nothing; when
    none has one, ``in_domain`` is not added either.
    """
    inside = None
    for prop, p in predictions.items():
        distance = getattr(p, "domain_distance", None)
        flags = getattr(p, "in_domain", None)
        if distance is None or flags is None:
            continue
        order = _order(candidates, p.ids)
        candidates[domain_distance_column(prop)] = np.asarray(distance, dtype=float)[order]
        own = np.asarray(flags, dtype=bool)[order]
        inside = own if inside is None else inside & own
    if inside is not None:
        candidates[IN_DOMAIN_COLUMN] = inside


def _order(candidates: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """Positions in ``ids`` of the candidates' ids, in the candidates' order.

    Raises
    ------
    RankingError
        If a candidate has no prediction in ``ids``.
    """
    position = pd.Series(range(len(ids)), index=ids)
    known = candidates["id"].isin(position.index).to_numpy()
    if not known.all():
        missing = list(candidates["id"][~known])
        raise RankingError(f"ranking: no predictions for {len(missing)} candidates: {missing[:5]}")
    return position[candidates["id"]].to_numpy()


def criterion_margin(values: np.ndarray, criterion: CriterionSpec) -> np.ndarray:
    """Return the signed distance of each value to the nearest bound of ``criterion``."""
    margins = []
    if criterion.min is not None:
        margins.append(values - criterion.min)
    if criterion.max is not None:
        margins.append(criterion.max - values)
    return np.minimum.reduce(margins)


def meeting_criteria(
    table: pd.DataFrame, criteria: Sequence[CriterionSpec | dict[str, Any]], ranking: str
) -> pd.DataFrame:
    """The rows of a stored ranking's table whose predictions meet ``criteria``, by rank.

    Their ``margin`` becomes the smallest margin under these criteria; an empty list keeps
    every row. ``ranking`` names the ranking in errors. A criterion given as a mapping needs
    no unit (``{"property": "band_gap", "min": 1.1}``).

    Raises
    ------
    RankingError
        If a criterion is invalid (no bound, ``min`` not below ``max``) or names a property
        the ranking has no predictions of.
    """
    if not criteria:
        return table.sort_values("rank")
    margins = []
    for given in criteria:
        spec = given if isinstance(given, CriterionSpec) else _criterion_spec(given)
        column = prediction_column(spec.property)
        if column not in table.columns:
            have = sorted(c[5:] for c in table.columns if str(c).startswith("pred_"))
            raise RankingError(
                f"ranking {ranking} has no predictions of {spec.property!r} "
                f"(it has: {', '.join(have)})"
            )
        margins.append(criterion_margin(table[column].to_numpy(dtype=float), spec))
    margin = np.minimum.reduce(margins)
    return table.assign(margin=margin)[margin >= 0].sort_values("rank")


def _criterion_spec(given: dict[str, Any]) -> CriterionSpec:
    from pydantic import ValidationError

    from matscreen.tasks.spec import describe_errors

    try:
        return CriterionSpec.model_validate({"unit": "", **given})
    except ValidationError as exc:
        raise RankingError(f"criterion {given}: {describe_errors(exc)}") from None


def rank_candidates(candidates: pd.DataFrame, criteria: list[CriterionSpec]) -> pd.DataFrame:
    """Rank candidates by their smallest criterion margin.

    Parameters
    ----------
    candidates
        One row per candidate: columns ``id``, ``formula`` and ``pred_<property>`` for
        every property the criteria name.
    criteria
        The campaign's criteria.

    Returns
    -------
    pandas.DataFrame
        The candidates with one ``margin_<property>`` column per criterion, ``margin``,
        ``meets_criteria`` and ``rank`` (1 = best), sorted by rank. Margins that agree to
        1e-9 are ties, broken by id, so the order is deterministic.

    Raises
    ------
    RankingError
        If a criterion's prediction column is missing.
    """
    ranked = candidates.copy()
    per_criterion = []
    for criterion in criteria:
        column = prediction_column(criterion.property)
        if column not in ranked.columns:
            raise RankingError(f"ranking: no predictions for {criterion.property!r} ({column})")
        margin = criterion_margin(ranked[column].to_numpy(dtype=float), criterion)
        ranked[f"margin_{criterion.property}"] = margin
        per_criterion.append(margin)
    ranked["margin"] = np.minimum.reduce(per_criterion) if per_criterion else 0.0
    ranked["meets_criteria"] = ranked["margin"] >= 0
    return order_by(ranked, [("margin", True)])


def meets_all(values: dict[str, np.ndarray], criteria: list[CriterionSpec]) -> np.ndarray:
    """Whether each row's values (one array per property) satisfy every criterion."""
    ok = np.ones(len(next(iter(values.values()))), dtype=bool) if values else np.array([])
    for criterion in criteria:
        ok &= criterion_margin(values[criterion.property], criterion) >= 0
    return ok


def screening_summary(
    ranking: pd.DataFrame,
    reported: dict[str, dict[str, float | None]],
    criteria: list[CriterionSpec],
    shortlist_size: int,
    shortlist_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Compare a ranking with the reported (true) values of the held-out candidates.

    Parameters
    ----------
    ranking
        Output of :func:`rank_candidates`.
    reported
        For each property a criterion names: ``{record id: reported value or None}``.

    Returns
    -------
    dict
        ``n_candidates``, ``n_predicted_hits``, ``n_true_hits`` (candidates whose reported
        values meet every criterion; candidates lacking a value are not hits),
        ``true_hits_in_shortlist`` and ``shortlist_size``.
    """
    ids = list(ranking["id"])
    values = {
        c.property: np.array(
            [
                np.nan if reported[c.property].get(i) is None else reported[c.property][i]
                for i in ids
            ],
            dtype=float,
        )
        for c in criteria
    }
    true_hit = meets_all(values, criteria) if ids else np.zeros(0, dtype=bool)
    size = min(shortlist_size, len(ids))
    picked = set(shortlist_ids) if shortlist_ids is not None else set(ids[:size])
    return {
        "n_candidates": len(ids),
        "n_predicted_hits": int(ranking["meets_criteria"].sum()),
        "n_true_hits": int(true_hit.sum()),
        "shortlist_size": size,
        "true_hits_in_shortlist": int(
            sum(hit for i, hit in zip(ids, true_hit, strict=True) if i in picked)
        ),
    }
