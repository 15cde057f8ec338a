"""A shortlist spread over chemistries: caps per group and maximal marginal relevance.

A ranking by score alone tends to fill the shortlist with near-copies of one compound
(fifty Sr-Ti-O variants), which tells an experimentalist little more than the first one
did. Two remedies, which may be combined:

cap per group
    Candidates are grouped by chemical system (``O-Sr-Ti``: the sorted elements) or by
    prototype (the table's ``prototype`` column where it has one, else the anonymized
    reduced formula, ``ABC3``), and the shortlist takes at most ``cap`` of a group;
    further members are skipped with ``cap_reached``.
maximal marginal relevance (Carbonell and Goldstein, SIGIR 1998)
    Each next pick maximizes ``λ · relevance − (1 − λ) · max similarity to the picks so
    far``, on the candidates' feature vectors standardized over the ranked candidates.
    Relevance is a non-negative score divided by the best candidate's (the probability of
    success relative to the most probable candidate, so λ keeps its meaning when every
    probability is small), or else ``size / (size + rank - 1)``, which halves by the time
    the ranking passes the shortlist's size whatever the number of candidates. Similarity is
    ``1 / (1 + d / sqrt(m))`` for the Euclidean distance ``d`` over ``m`` features (1
    for identical vectors, 1/2 one standard deviation apart per feature), or the cosine
    of the angle between the standardized vectors. Candidates passed over for a less
    relevant one are marked ``too_similar``, with the pick they resemble most.

Candidates after the last pick in the ranking are ``not_reached``. Values equal to 1e-9
are ties, decided by the position in the ranking, so the shortlist is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.order import TIE_DECIMALS
from matscreen.tasks.spec import DiversitySpec, RankingSpec

CAP_REACHED = "cap_reached"
TOO_SIMILAR = "too_similar"
NOT_REACHED = "not_reached"


@dataclass(frozen=True)
class Shortlist:
    """The chosen candidates and why the others were not.

    Attributes
    ----------
    ids
        The shortlisted ids, in shortlist order.
    table
        The ranking (in rank order) with ``group`` (when grouped), ``shortlist_position``
        (1 = first pick; empty when not picked), ``skip_reason`` (empty when picked,
        else ``cap_reached``, ``too_similar`` or ``not_reached``) and ``similar_to`` (the
        pick a ``too_similar`` candidate resembles most).
    """

    ids: list[str]
    table: pd.DataFrame

    def frame(self) -> pd.DataFrame:
        """The shortlisted rows of :attr:`table`, in shortlist order."""
        picked = self.table[self.table["shortlist_position"].notna()]
        return picked.sort_values("shortlist_position").reset_index(drop=True)


def chemical_system(formula: str) -> str:
    """The chemical system of a formula: its elements, sorted, joined by ``-``."""
    return Composition(formula).chemical_system


def anonymized_formula(formula: str) -> str:
    """The reduced formula with elements replaced by A, B, C … (``SrTiO3`` → ``ABC3``)."""
    return Composition(formula).anonymized_formula


def candidate_groups(ranked: pd.DataFrame, by: str) -> pd.Series:
    """Group label of every candidate: ``chemsys`` or ``prototype``.

    Raises
    ------
    RankingError
        If the grouping is unknown, or a formula cannot be read (naming the candidate).
    """
    if by == "prototype" and "prototype" in ranked.columns:
        return ranked["prototype"].astype(str)
    if by not in ("chemsys", "prototype"):
        raise RankingError(f"shortlist: unknown grouping {by!r} (chemsys or prototype)")
    label = chemical_system if by == "chemsys" else anonymized_formula
    groups = []
    for candidate_id, formula in zip(ranked["id"], ranked["formula"], strict=True):
        try:
            groups.append(label(str(formula)))
        except (ValueError, KeyError) as exc:
            raise RankingError(
                f"shortlist: formula {formula!r} of candidate {candidate_id} cannot be read: {exc}"
            ) from exc
    return pd.Series(groups, index=ranked.index, dtype=str)


def standardized_features(features: pd.DataFrame, ids: list[str]) -> np.ndarray:
    """Rows of ``features`` (indexed by candidate id) for ``ids``, standardized.

    Each column is centred and scaled over these rows; a missing value becomes the
    column's mean (0), and columns without spread are dropped, since they cannot tell
    candidates apart.

    Raises
    ------
    RankingError
        If a candidate has no row, a column is not numeric, or no column varies.
    """
    missing = [i for i in ids if i not in features.index]
    if missing:
        raise RankingError(
            f"shortlist: no feature row for {len(missing)} candidates: {missing[:5]}"
        )
    try:
        values = features.loc[ids].to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise RankingError(f"shortlist: features must be numeric: {exc}") from exc
    with np.errstate(invalid="ignore", divide="ignore"):
        present = ~np.isnan(values)
        count = present.sum(axis=0)
        mean = np.where(count > 0, np.nansum(values, axis=0) / np.maximum(count, 1), 0.0)
        centred = np.where(present, values - mean, 0.0)
        std = np.sqrt((centred**2).sum(axis=0) / np.maximum(count, 1))
    keep = std > 1e-12
    if not keep.any():
        raise RankingError("shortlist: no feature varies among the candidates")
    return centred[:, keep] / std[keep]


def _similarity(z: np.ndarray, row: int, metric: str) -> np.ndarray:
    if metric == "euclidean":
        distance = np.sqrt(((z - z[row]) ** 2).sum(axis=1))
        return 1.0 / (1.0 + distance / np.sqrt(z.shape[1]))
    if metric == "cosine":
        norms = np.linalg.norm(z, axis=1)
        denominator = norms * norms[row]
        dot = z @ z[row]
        return np.where(denominator > 0, dot / np.where(denominator > 0, denominator, 1.0), 0.0)
    raise RankingError(f"shortlist: unknown metric {metric!r} (euclidean or cosine)")


def _relevance(ranked: pd.DataFrame, score: str | None, size: int) -> np.ndarray:
    if score is None:
        return size / (size + np.arange(len(ranked)))
    if score not in ranked.columns:
        raise RankingError(f"shortlist: no score column {score!r}")
    values = ranked[score].to_numpy(dtype=float)
    if np.isnan(values).any() or (values < 0).any():
        raise RankingError(f"shortlist: score {score!r} must be non-negative and present")
    best = values.max() if len(values) else 0.0
    return values / best if best > 0 else np.zeros(len(values))


def select_shortlist(
    ranked: pd.DataFrame,
    size: int,
    *,
    by: str = "none",
    cap: int | None = None,
    features: pd.DataFrame | None = None,
    mmr_lambda: float | None = None,
    metric: str = "euclidean",
    score: str | None = None,
) -> Shortlist:
    """Choose up to ``size`` candidates from a ranking, spread over chemistries.

    Parameters
    ----------
    ranked
        A ranking (``id``, ``formula``, ``rank``), as the ranking methods return it.
    size
        Most candidates to choose.
    by, cap
        Group by ``chemsys`` or ``prototype`` and take at most ``cap`` of a group;
        ``none`` for no groups.
    features
        Feature vectors indexed by candidate id; needed with ``mmr_lambda``.
    mmr_lambda
        Weight of relevance against dissimilarity in [0, 1]; ``None`` picks in rank order.
    metric
        ``euclidean`` or ``cosine``, on standardized features.
    score
        A non-negative column to use as relevance, relative to its largest value
        (``p_success``); by default the position in the ranking.

    Returns
    -------
    Shortlist
        The ids in order and the annotated ranking.

    Raises
    ------
    RankingError
        If the options do not fit together or the data they need is missing.
    """
    if size < 1:
        raise RankingError(f"shortlist: size must be at least 1, got {size}")
    if (by != "none") != (cap is not None):
        raise RankingError("shortlist: give a grouping (chemsys or prototype) and a cap together")
    if cap is not None and cap < 1:
        raise RankingError(f"shortlist: cap must be at least 1, got {cap}")
    if mmr_lambda is not None and not 0.0 <= mmr_lambda <= 1.0:
        raise RankingError(f"shortlist: mmr_lambda must lie in [0, 1], got {mmr_lambda}")
    if mmr_lambda is not None and features is None:
        raise RankingError("shortlist: maximal marginal relevance needs feature vectors")

    table = ranked.sort_values("rank") if "rank" in ranked.columns else ranked
    table = table.reset_index(drop=True)
    n = len(table)
    ids = [str(i) for i in table["id"]]

    if by != "none":
        table["group"] = candidate_groups(table, by)
        codes, _ = pd.factorize(table["group"])
    else:
        codes = np.zeros(n, dtype=int)
    limit = cap if cap is not None else n
    counts = np.zeros(codes.max() + 1 if n else 0, dtype=int)

    use_mmr = mmr_lambda is not None and features is not None
    z = standardized_features(features, ids) if use_mmr else np.zeros((n, 0))
    relevance = _relevance(table, score, size) if use_mmr else np.zeros(n)
    weight = mmr_lambda if mmr_lambda is not None else 1.0
    picks: list[int] = []
    similarities: list[np.ndarray] = []
    closest = np.zeros(n)  # max similarity to the picks so far; no penalty before the first
    available = np.ones(n, dtype=bool)
    while len(picks) < size:
        eligible = available & (counts[codes] < limit)
        if not eligible.any():
            break
        if not use_mmr:
            pick = int(np.flatnonzero(eligible)[0])
        else:
            value = np.round(weight * relevance - (1.0 - weight) * closest, TIE_DECIMALS)
            value[~eligible] = -np.inf
            pick = int(np.argmax(value))  # the first maximum: the best-ranked of equals
        picks.append(pick)
        available[pick] = False
        counts[codes[pick]] += 1
        if use_mmr:
            similarity = _similarity(z, pick, metric)
            closest = similarity if len(picks) == 1 else np.maximum(closest, similarity)
            similarities.append(similarity)

    position = pd.array([pd.NA] * n, dtype="Int64")
    for order, pick in enumerate(picks, start=1):
        position[pick] = order
    # Once the shortlist is full, candidates after the last pick never had their turn.
    last = max(picks) if len(picks) == size else n
    reasons = np.full(n, "", dtype=object)
    similar_to = np.full(n, "", dtype=object)
    for row in np.flatnonzero(available):
        if row > last:
            reasons[row] = NOT_REACHED
        elif counts[codes[row]] >= limit:
            reasons[row] = CAP_REACHED
        else:
            reasons[row] = TOO_SIMILAR
            nearest = int(np.argmax([s[row] for s in similarities]))
            similar_to[row] = ids[picks[nearest]]
    table["shortlist_position"] = position
    table["skip_reason"] = reasons
    table["similar_to"] = similar_to
    return Shortlist([ids[p] for p in picks], table)


def shortlist_with(
    ranked: pd.DataFrame,
    size: int,
    ranking: RankingSpec,
    features: pd.DataFrame | None = None,
) -> Shortlist:
    """Choose the shortlist as a campaign's ranking spec says.

    Relevance for maximal marginal relevance is ``p_success`` where the ranking has it,
    else the position in the ranking.

    Parameters
    ----------
    ranked
        The ranking.
    size
        The campaign's shortlist size.
    ranking
        The campaign's ranking spec (its ``diversity``).
    features
        Feature vectors indexed by candidate id, when ``diversity.mmr_lambda`` is set.

    Raises
    ------
    RankingError
        As :func:`select_shortlist`.
    """
    diversity: DiversitySpec = ranking.diversity
    return select_shortlist(
        ranked,
        size,
        by=diversity.by,
        cap=diversity.cap,
        features=features,
        mmr_lambda=diversity.mmr_lambda,
        metric=diversity.metric,
        score="p_success" if "p_success" in ranked.columns else None,
    )


#: Best-ranked candidates among which maximal marginal relevance picks the shortlist when
#: the pool is larger (their feature vectors are read from the feature store).
MMR_WINDOW = 5000


def shortlist_within(
    ranked: pd.DataFrame,
    size: int,
    ranking: RankingSpec,
    features_of: Callable[[list[str]], pd.DataFrame],
) -> Shortlist:
    """:func:`shortlist_with` for a pool of any size.

    With maximal marginal relevance the shortlist is chosen among the
    :data:`MMR_WINDOW` best-ranked candidates (four times as many, and so on, while a
    group cap leaves it short), whose features ``features_of(ids)`` returns (indexed by
    id); the candidates after them were not reached. Without it, the
    whole ranking is used and no feature is read.
    """
    if ranking.diversity.mmr_lambda is None:
        return shortlist_with(ranked, size, ranking)
    table = ranked.sort_values("rank") if "rank" in ranked.columns else ranked
    window = MMR_WINDOW
    while True:
        head, rest = table.iloc[:window], table.iloc[window:]
        chosen = shortlist_with(head, size, ranking, features_of([str(i) for i in head["id"]]))
        # A cap per group may leave the window short of picks: widen it.
        if len(chosen.ids) >= size or rest.empty:
            break
        window *= 4
    if rest.empty:
        return chosen
    rest = rest.reset_index(drop=True)
    if "group" in chosen.table.columns:
        rest["group"] = candidate_groups(rest, ranking.diversity.by)
    rest["shortlist_position"] = pd.array([pd.NA] * len(rest), dtype="Int64")
    rest["skip_reason"] = NOT_REACHED
    rest["similar_to"] = ""
    return Shortlist(chosen.ids, pd.concat([chosen.table, rest], ignore_index=True))
