"""How well a ranking finds the true hits: recall and enrichment in its top fractions.

Once the true values of the ranked candidates are known (held-out labels, or
experiments), the true hits are the candidates whose values meet every criterion. For the
top fraction f of the ranking (its first ``k = ceil(f · n)`` candidates):

- recall: the share of all true hits found in the top k;
- precision: the share of the top k that are true hits;
- enrichment: precision over the overall hit rate — how many times more hits the top k
  holds than k candidates drawn at random would, on average.

Candidates without a true value for some criterion cannot be judged; they are left out
(``n_unlabelled`` counts them) and the fractions are taken of the labelled ones, in their
ranked order. With no true hits, recall and enrichment are undefined: they are ``None``
and ``note`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.criteria import meets_all
from matscreen.tasks.spec import CriterionSpec

#: Top fractions of a ranking reported by default: 1 %, 5 % and 10 %.
TOP_FRACTIONS = (0.01, 0.05, 0.10)


def true_hits(
    ids: Sequence[str],
    reported: Mapping[str, Mapping[str, float | None]],
    criteria: list[CriterionSpec],
) -> tuple[np.ndarray, np.ndarray]:
    """Which candidates are true hits, and which have every value needed to tell.

    Parameters
    ----------
    ids
        Candidate ids.
    reported
        For each property a criterion names: ``{id: true value or None}``.
    criteria
        The campaign's criteria.

    Returns
    -------
    tuple of numpy.ndarray
        ``(hit, labelled)``, booleans aligned with ``ids``; a candidate lacking a value is
        not labelled and not a hit.

    Raises
    ------
    RankingError
        If a property the criteria name has no true values at all.
    """
    values: dict[str, np.ndarray] = {}
    for criterion in criteria:
        prop = criterion.property
        if prop not in reported:
            raise RankingError(f"validation: no true values of {prop!r}")
        known = reported[prop]
        values[prop] = np.array(
            [np.nan if (v := known.get(i)) is None else float(v) for i in ids], dtype=float
        )
    labelled = np.ones(len(ids), dtype=bool)
    for array in values.values():
        labelled &= ~np.isnan(array)
    hit = meets_all(values, criteria) if len(ids) else np.zeros(0, dtype=bool)
    return hit & labelled, labelled


def screening_validation(
    ranking: pd.DataFrame,
    reported: Mapping[str, Mapping[str, float | None]],
    criteria: list[CriterionSpec],
    fractions: Sequence[float] = TOP_FRACTIONS,
) -> dict[str, Any]:
    """Recall, precision and enrichment of true hits in the top fractions of a ranking.

    Parameters
    ----------
    ranking
        A ranking with ``id``, best first (sorted by ``rank`` if it has one).
    reported
        For each property a criterion names: ``{id: true value or None}``.
    criteria
        The campaign's criteria.
    fractions
        Top fractions of the (labelled) ranking to evaluate, each in (0, 1].

    Returns
    -------
    dict
        ``n_candidates`` (labelled), ``n_unlabelled``, ``n_true_hits``, ``hit_rate``
        (``None`` without candidates), ``top`` — one dict per fraction with
        ``fraction``, ``k``, ``hits``, ``recall``, ``precision`` and ``enrichment`` — and
        ``note`` (why values are ``None``, else ``None``). Plain JSON types.

    Raises
    ------
    RankingError
        If a fraction is outside (0, 1] or true values of a property are missing.
    """
    for fraction in fractions:
        if not 0.0 < fraction <= 1.0:
            raise RankingError(f"validation: top fraction must lie in (0, 1], got {fraction}")
    ordered = ranking.sort_values("rank") if "rank" in ranking.columns else ranking
    ids = [str(i) for i in ordered["id"]]
    hit, labelled = true_hits(ids, reported, criteria)
    hit = hit[labelled]
    n = int(labelled.sum())
    n_hits = int(hit.sum())
    hit_rate = n_hits / n if n else None
    note = None
    if n == 0:
        note = "no candidate has true values for every criterion"
    elif n_hits == 0:
        note = "no true hits among the candidates: recall and enrichment are undefined"
    found = np.cumsum(hit)
    top = []
    for fraction in fractions:
        # At least one candidate; the tolerance keeps 5 % of 200 at 10, not 11.
        k = max(1, math.ceil(fraction * n - 1e-9)) if n else 0
        hits = int(found[k - 1]) if k else 0
        top.append(
            {
                "fraction": float(fraction),
                "k": k,
                "hits": hits,
                "recall": hits / n_hits if n_hits else None,
                "precision": hits / k if k else None,
                "enrichment": (hits / k) / hit_rate if k and hit_rate else None,
            }
        )
    return {
        "n_candidates": n,
        "n_unlabelled": len(ids) - n,
        "n_true_hits": n_hits,
        "hit_rate": hit_rate,
        "top": top,
        "note": note,
    }
