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

When the models think no candidate can pass, every ``p`` is tiny (1e-12, 1e-40, or 0
after the product of the per-property probabilities underflows) and so is every
acquisition. Candidates whose acquisitions agree to 1e-9 are then ordered as a
scientist would pick among long shots: the one least unlikely to pass first, by the
logarithm of the probability of success, summed over the per-property probabilities
``p_<property>`` so that it stays finite where their product has underflowed (a compound
likely to be stable whose gap lies far outside the range comes before one whose gap lies
as far outside and that is unlikely to be stable too). Where even a per-property
probability is exactly 0, the smallest margin to the criteria (``margin``, the ranking's
own tie-break) decides, then the id.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.order import order_by
from matscreen.tasks.rank.probability import SUCCESS_COLUMN, probability_column
from matscreen.tasks.spec import RankingSpec

#: Column of the base-10 logarithm of the probability of success (-inf when it is 0).
LOG_SUCCESS_COLUMN = "log10_p_success"


def outcome_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli outcome of probability ``p`` (0 at p = 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0) + np.where(
            p < 1, -(1 - p) * np.log2(1 - p), 0.0
        )
    return terms


def log10_success(ranked: pd.DataFrame) -> np.ndarray:
    """Base-10 logarithm of each candidate's probability of meeting every criterion.

    Summed over the per-property probabilities (``p_<property>`` columns) when the
    ranking has them, so that it stays finite where their product, ``p_success``, has
    underflowed to 0; from ``p_success`` otherwise. A probability of exactly 0 gives
    ``-inf``.
    """
    prefix = probability_column("")  # "p_", the start of every per-property column
    factors = [c for c in ranked.columns if c.startswith(prefix) and c != SUCCESS_COLUMN]
    columns = factors or [SUCCESS_COLUMN]
    p = ranked[columns].to_numpy(dtype=float)
    with np.errstate(divide="ignore"):
        return np.log10(np.clip(p, 0.0, 1.0)).sum(axis=1)


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
        has them, ``p_success``, ``log10_p_success`` (:func:`log10_success`),
        ``information_bits`` and ``acquisition``. Acquisitions equal to 1e-9 go by
        ``log10_p_success``, then by the ranking's ``margin`` (largest first) where it
        has one, then by id (see the module documentation).

    Raises
    ------
    RankingError
        If the ranking has no ``p_success``, or ``n`` or ``kappa`` is out of range.
    """
    if n < 1:
        raise RankingError(f"suggest: n must be at least 1, got {n}")
    if kappa < 0:
        raise RankingError(f"suggest: kappa must be >= 0, got {kappa}")
    if SUCCESS_COLUMN not in ranked.columns:
        raise RankingError(
            f"suggest: the ranking has no {SUCCESS_COLUMN}; it needs prediction intervals"
        )
    excluded = {str(i) for i in exclude}
    pool = ranked[~ranked["id"].astype(str).isin(excluded)]
    p = pool[SUCCESS_COLUMN].to_numpy(dtype=float)
    if np.isnan(p).any():
        raise RankingError(f"suggest: {SUCCESS_COLUMN} is missing for some candidates")
    keep = [c for c in ("id", "formula", "rank", SUCCESS_COLUMN) if c in pool.columns]
    # order_by numbers its rows in "rank"; the ranking's own rank is kept aside.
    scored = pool[keep].rename(columns={"rank": "ranking_rank"})
    scored[LOG_SUCCESS_COLUMN] = log10_success(pool)
    scored["information_bits"] = outcome_entropy(p)
    scored["acquisition"] = p + kappa * scored["information_bits"].to_numpy()
    keys = [("acquisition", True), (LOG_SUCCESS_COLUMN, True)]
    if "margin" in pool.columns:
        scored["margin"] = pool["margin"].to_numpy(dtype=float)
        keys.append(("margin", True))
    ordered = order_by(scored, keys).head(n)
    ordered = ordered.rename(columns={"rank": "suggestion", "ranking_rank": "rank"})
    columns = ["suggestion", *keep, LOG_SUCCESS_COLUMN, "information_bits", "acquisition"]
    return ordered[columns].reset_index(drop=True)


def suggest_with(
    ranked: pd.DataFrame, ranking: RankingSpec, shortlist: Iterable[str] = ()
) -> pd.DataFrame | None:
    """Next experiments as a campaign's ranking spec says; ``None`` when it asks for none.

    Raises
    ------
    RankingError
        As :func:`suggest`.
    """
    if ranking.suggest is None:
        return None
    exclude = shortlist if ranking.suggest.exclude_shortlist else ()
    return suggest(ranked, ranking.suggest.n, kappa=ranking.suggest.kappa, exclude=exclude)
