"""Non-dominated sorting: Pareto fronts of candidates on several objectives at once.

A candidate dominates another when it is at least as good on every objective and better on
one. Front 1 holds the candidates nobody dominates; front 2 those dominated only by front
1, and so on. Unlike a weighted or smallest-margin score, the fronts need no exchange rate
between objectives in different units (eV of band gap against eV/atom of formation
energy).
"""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.order import TIE_DECIMALS


class _Front:
    """The members of one front, in a buffer that grows by doubling."""

    def __init__(self, width: int) -> None:
        self._rows = np.empty((4, width))
        self.size = 0

    def add(self, row: np.ndarray) -> None:
        if self.size == len(self._rows):
            self._rows = np.concatenate([self._rows, np.empty_like(self._rows)])
        self._rows[self.size] = row
        self.size += 1

    def dominates(self, row: np.ndarray) -> bool:
        members = self._rows[: self.size]
        better_or_equal = (members >= row).all(axis=1)
        better = (members > row).any(axis=1)
        return bool((better_or_equal & better).any())


def pareto_fronts(objectives: np.ndarray) -> np.ndarray:
    """Front number (1 = non-dominated) of every row, every objective to be maximized.

    Values are rounded to 1e-9 first, so rows equal to that precision tie and share a
    front. Distinct rows are visited in decreasing lexicographic order, in which no row can
    dominate an earlier one, and each is put in the first front none of whose members
    dominates it; a row dominated by a member of front f is dominated by a member of every
    earlier front, so that front is found by bisection (the efficient non-dominated sort
    of Zhang et al., IEEE Trans. Evol. Comput. 19, 201 (2015)).

    Parameters
    ----------
    objectives
        ``(n_rows, n_objectives)``, larger is better.

    Returns
    -------
    numpy.ndarray
        ``n_rows`` integers from 1.

    Raises
    ------
    RankingError
        If the array is not two-dimensional or holds NaN.
    """
    objectives = np.asarray(objectives, dtype=float)
    if objectives.ndim != 2:
        raise RankingError(f"pareto: objectives must be a 2-d array, got shape {objectives.shape}")
    if np.isnan(objectives).any():
        raise RankingError("pareto: objectives hold NaN")
    if not len(objectives):
        return np.zeros(0, dtype=int)
    distinct, inverse = np.unique(objectives.round(TIE_DECIMALS) + 0.0, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    if distinct.shape[1] == 1:  # one objective: fronts are the distinct values, best first
        return (len(distinct) - np.arange(len(distinct)))[inverse]
    if distinct.shape[1] == 2:
        return _two_objective_fronts(distinct)[inverse]
    # np.unique sorts ascending lexicographically; walk it backwards.
    fronts: list[_Front] = []
    front_of = np.empty(len(distinct), dtype=int)
    for i in range(len(distinct) - 1, -1, -1):
        row = distinct[i]
        low, high = 0, len(fronts)
        while low < high:
            middle = (low + high) // 2
            if fronts[middle].dominates(row):
                low = middle + 1
            else:
                high = middle
        if low == len(fronts):
            fronts.append(_Front(distinct.shape[1]))
        fronts[low].add(row)
        front_of[i] = low + 1
    return front_of[inverse]


def _two_objective_fronts(distinct: np.ndarray) -> np.ndarray:
    """Fronts of distinct rows of two objectives, sorted ascending lexicographically.

    Walking the rows by decreasing first objective, the members of one front have
    increasing second objectives, so a row is dominated by a front exactly when the front's
    latest member is at least as good on the second objective: one bisection per row.
    """
    front_of = np.empty(len(distinct), dtype=int)
    # Negated second objective of each front's latest member: non-decreasing over fronts.
    latest: list[float] = []
    for i in range(len(distinct) - 1, -1, -1):
        key = -float(distinct[i, 1])
        front = bisect_right(latest, key)
        if front == len(latest):
            latest.append(key)
        else:
            latest[front] = key
        front_of[i] = front + 1
    return front_of
