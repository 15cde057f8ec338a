"""Pareto fronts on hand-made points, and the ranking methods a spec can choose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank import (
    pareto_fronts,
    rank_by_probability,
    rank_candidates,
    rank_pareto,
    rank_with,
)
from matscreen.tasks.spec import CriterionSpec, RankingSpec

HOF = CriterionSpec(property="heat_of_formation", max=0.21, unit="eV")
GAP = CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV")


def test_fronts_of_hand_made_points_with_dominated_and_tied_points() -> None:
    points = {
        "A": (3.0, 1.0),
        "B": (1.0, 3.0),
        "C": (2.0, 2.0),
        "D": (2.0, 1.0),  # dominated by A and C
        "E": (1.0, 1.0),  # dominated by D, so one front further
        "F": (3.0, 1.0),  # equal to A: neither dominates, same front
        "G": (0.5, 3.0),  # dominated by B only
        "H": (1.0 + 1e-12, 3.0),  # equal to B within 1e-9
        "I": (3.0, 0.5),  # dominated by A (equal first objective, worse second)
    }
    fronts = pareto_fronts(np.array(list(points.values())))
    assert dict(zip(points, fronts.tolist(), strict=True)) == {
        "A": 1,
        "B": 1,
        "C": 1,
        "D": 2,
        "E": 3,
        "F": 1,
        "G": 2,
        "H": 1,
        "I": 2,
    }


def test_fronts_of_three_objectives() -> None:
    points = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.5, 0.5, 0.0],  # not dominated: better than [1,0,0] on the second
            [0.5, 0.0, 0.0],  # dominated by [1,0,0] and [0.5,0.5,0]
            [0.0, 0.0, 0.0],  # dominated by the previous one
        ]
    )
    assert pareto_fronts(points).tolist() == [1, 1, 1, 1, 2, 3]


def test_fronts_agree_with_a_direct_definition_on_random_points() -> None:
    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 4):
        points = rng.integers(0, 5, size=(60, width)).astype(float)
        remaining = set(range(len(points)))
        expected = np.zeros(len(points), dtype=int)
        front = 0
        while remaining:
            front += 1
            best = [
                i
                for i in remaining
                if not any(
                    (points[j] >= points[i]).all() and (points[j] > points[i]).any()
                    for j in remaining
                )
            ]
            expected[best] = front
            remaining -= set(best)
        assert pareto_fronts(points).tolist() == expected.tolist()


def test_fronts_refuse_nan() -> None:
    with pytest.raises(RankingError, match="NaN"):
        pareto_fronts(np.array([[1.0, np.nan]]))


def _candidates() -> pd.DataFrame:
    # Margins (heat of formation 0.21 - h; gap min(g - 1.4, 3.1 - g)):
    # p (0.21, 0.1), q (0.11, 0.6), r (0.11, 0.5) dominated by q, s (0.21, 0.1) = p,
    # t (-0.29, 0.8) not dominated (best gap margin), u (-0.29, 0.1) dominated by r too.
    return pd.DataFrame(
        {
            "id": ["s", "q", "r", "p", "t", "u"],
            "formula": ["SrTiO3", "BaZrO3", "CaSnO3", "KNbO3", "LaAlO3", "NaTaO3"],
            "pred_heat_of_formation": [0.0, 0.1, 0.1, 0.0, 0.5, 0.5],
            "pred_band_gap": [1.5, 2.0, 1.9, 1.5, 2.2, 1.5],
        }
    )


def test_pareto_by_margin_orders_fronts_then_smallest_margin_then_id() -> None:
    ranked = rank_pareto(_candidates(), [HOF, GAP], objective="margin")
    # Front 1: q (margin 0.11), p and s (0.1, tie -> id), t (-0.29); front 2: r; 3: u.
    assert list(ranked["id"]) == ["q", "p", "s", "t", "r", "u"]
    assert list(ranked["front"]) == [1, 1, 1, 1, 2, 3]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5, 6]


def test_pareto_by_probability_uses_per_property_probabilities() -> None:
    frame = _candidates()
    frame["std_heat_of_formation"] = 0.1
    frame["std_band_gap"] = 0.3
    ranked = rank_pareto(frame, [HOF, GAP], objective="probability")
    # Equal spreads: each probability grows with its margin, so the fronts are those of
    # the margins; inside front 1, candidates go by p_success.
    assert set(ranked.loc[ranked["front"] == 1, "id"]) == {"q", "p", "s", "t"}
    assert list(ranked.loc[ranked["front"] > 1, "id"]) == ["r", "u"]
    assert list(ranked["front"].iloc[4:]) == [2, 3]
    front_one = ranked[ranked["front"] == 1]
    assert list(front_one["p_success"]) == sorted(front_one["p_success"], reverse=True)
    assert list(ranked["id"][:3]) == ["q", "p", "s"]  # p and s tie exactly -> by id


def test_rank_with_dispatches_on_the_spec() -> None:
    frame = _candidates()
    frame["std_heat_of_formation"] = 0.1
    frame["std_band_gap"] = 0.3
    criteria = [HOF, GAP]
    pd.testing.assert_frame_equal(
        rank_with(frame, criteria, RankingSpec(method="margin")), rank_candidates(frame, criteria)
    )
    # Probability is the default.
    pd.testing.assert_frame_equal(
        rank_with(frame, criteria, RankingSpec()), rank_by_probability(frame, criteria)
    )
    pareto = rank_with(frame, criteria, RankingSpec(method="pareto", pareto_objective="margin"))
    assert list(pareto["id"]) == ["q", "p", "s", "t", "r", "u"]


def test_probability_methods_need_uncertainty_but_margin_pareto_does_not() -> None:
    with pytest.raises(RankingError, match="no uncertainty for 'heat_of_formation'"):
        rank_with(_candidates(), [HOF, GAP], RankingSpec(method="pareto"))
    assert len(rank_pareto(_candidates(), [HOF, GAP], objective="margin")) == 6
