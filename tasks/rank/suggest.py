"""Next experiments: candidates worth measuring, for hits and for what the models learn.

The outcome of measuring a candidate — hit or not — is a Bernoulli variable with
probability ``p`` (its probability of meeting every criterion). The acquisition is

    a = p + κ · H(p),   H(p) = −p log2 p − (1 − p) log2 (1 − p),

``p`` being the expected number of hits the experiment yields and ``H(p)`` the expected
information of its outcome, in bits. ``H`` is largest (1 bit) for ``p = 1/2``, the
candidates the models cannot call, whose measurement says the most about where the hits
lie; it is 0 for an outcome that is certain however wide the candidate's intervals are
(a compound predicted far outside a range with a wide interval teaches little about the
hits). ``κ = 0`` is pure exploitation (the probability ranking); a large ``κ`` is
uncertainty sampling. Both terms are unit-free and lie in [0, 1], so one ``κ`` means the
same thing whatever properties the criteria name — which a bonus on predictive spreads,
in eV and eV/atom at once, would not.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from matscreen.tasks.errors import ModelError
from matscreen.tasks.rank.order import order_by
from matscreen.tasks.rank.probability import SUCCESS_COLUMN
from matscreen.tasks.spec import RankingSpec


def outcome_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli outcome of probability ``p`` (0 at p = 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0) + np.where(
            p < 1, -(1 - p) * np.log2(1 - p), 0.0
        )
    return terms


def suggest(
    ranked: pd.DataFrame,
    n: int,
    *,
    kappa: float = 1.0,
    exclude: Iterable[str] = (),
) -> pd.DataFrame:
    """The ``n`` candidates with the highest acquisition ``p + κ · H(p)``.

    Parameters
    ----------
    ranked
        A ranking with ``id`` and ``p_success``.
    n
        How many to suggest (fewer when fewer candidates remain).
    kappa
        Weight of the outcome's information against the probability of a hit, >= 0.
    exclude
        Ids not to suggest (e.g. the shortlist, already on its way to the lab).

    Returns
    -------
    pandas.DataFrame
        ``suggestion`` (1 = first), ``id``, ``formula`` and ``rank`` where the ranking
        has them, ``p_success``, ``information_bits`` and ``acquisition``. Acquisitions
        equal to 1e-9 go by ``p_success``, then by id.

    Raises
    ------
    ModelError
        If the ranking has no ``p_success``, or ``n`` or ``kappa`` is out of range.
    """
    if n < 1:
        raise ModelError(f"suggest: n must be at least 1, got {n}")
    if kappa < 0:
        raise ModelError(f"suggest: kappa must be >= 0, got {kappa}")
    if SUCCESS_COLUMN not in ranked.columns:
        raise ModelError(
            f"suggest: the ranking has no {SUCCESS_COLUMN}; it needs prediction intervals"
        )
    excluded = {str(i) for i in exclude}
    pool = ranked[~ranked["id"].astype(str).isin(excluded)]
    keep = [c for c in ("id", "formula", "rank", SUCCESS_COLUMN) if c in pool.columns]
    # order_by numbers its rows in "rank"; the ranking's own rank is kept aside.
    pool = pool[keep].rename(columns={"rank": "ranking_rank"})
    p = pool[SUCCESS_COLUMN].to_numpy(dtype=float)
    if np.isnan(p).any():
        raise ModelError(f"suggest: {SUCCESS_COLUMN} is missing for some candidates")
    pool["information_bits"] = outcome_entropy(p)
    pool["acquisition"] = p + kappa * pool["information_bits"].to_numpy()
    ordered = order_by(pool, [("acquisition", True), (SUCCESS_COLUMN, True)]).head(n)
    ordered = ordered.rename(columns={"rank": "suggestion", "ranking_rank": "rank"})
    columns = ["suggestion", *keep, "information_bits", "acquisition"]
    return ordered[columns].reset_index(drop=True)


def suggest_with(
    ranked: pd.DataFrame, ranking: RankingSpec, shortlist: Iterable[str] = ()
) -> pd.DataFrame | None:
    """Next experiments as a campaign's ranking spec says; ``None`` when it asks for none.

    Raises
    ------
    ModelError
        As :func:`suggest`.
    """
    if ranking.suggest is None:
        return None
    exclude = shortlist if ranking.suggest.exclude_shortlist else ()
    return suggest(ranked, ranking.suggest.n, kappa=ranking.suggest.kappa, exclude=exclude)
