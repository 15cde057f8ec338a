"""Ranking by criterion margins, on hand-made predictions with a known order."""

from __future__ import annotations

import pandas as pd

from matscreen.tasks.rank import candidate_frame, rank_candidates, screening_summary
from matscreen.tasks.spec import CriterionSpec

CRITERIA = [
    CriterionSpec(property="heat_of_formation", max=0.21, unit="eV"),
    CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV"),
]


def _candidates() -> pd.DataFrame:
    return candidate_frame(
        ["c", "a", "b", "d", "e"],
        ["C", "A", "B", "D", "E"],
        {
            # margins: hof 0.21-x; gap min(x-1.4, 3.1-x)
            "heat_of_formation": [0.0, 0.11, 0.0, 0.5, 0.11],
            "band_gap": [2.25, 2.0, 1.5, 2.2, 2.0],
        },
    )


def test_order_follows_the_smallest_margin_with_ties_by_id() -> None:
    ranked = rank_candidates(_candidates(), CRITERIA)
    # c: min(0.21, 0.85) = 0.21; a and e: min(0.10, 0.6) = 0.10 (tie -> a first);
    # b: min(0.21, 0.1) = 0.10 -> also tied, id order a, b, e; d: 0.21-0.5 = -0.29
    assert list(ranked["id"]) == ["c", "a", "b", "e", "d"]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert list(ranked["meets_criteria"]) == [True, True, True, True, False]
    assert ranked.loc[0, "margin"] == 0.21
    assert round(ranked.loc[4, "margin"], 10) == -0.29
    assert round(ranked.loc[2, "margin_band_gap"], 10) == 0.1


def test_screening_summary_counts_true_hits_in_the_shortlist() -> None:
    ranked = rank_candidates(_candidates(), CRITERIA)
    reported = {
        "heat_of_formation": {"a": 0.0, "b": 0.3, "c": 0.1, "d": 0.0, "e": None},
        "band_gap": {"a": 1.5, "b": 2.0, "c": 0.0, "d": 2.0, "e": 2.0},
    }
    summary = screening_summary(ranked, reported, CRITERIA, shortlist_size=2)
    # true hits: a (0.0, 1.5) and d (0.0, 2.0); e lacks a value, b and c fail one criterion
    assert summary == {
        "n_candidates": 5,
        "n_predicted_hits": 4,
        "n_true_hits": 2,
        "shortlist_size": 2,
        "true_hits_in_shortlist": 1,
    }


def test_meeting_criteria_judges_a_stored_ranking_under_other_criteria() -> None:
    import math

    import pytest

    from matscreen.tasks.errors import RankingError
    from matscreen.tasks.rank.criteria import meeting_criteria

    table = pd.DataFrame(
        {
            "rank": [3, 1, 2, 4],
            "pred_band_gap": [1.5, 2.9, math.nan, 0.4],
            "margin": [0.1, 0.2, 0.3, -0.4],
        },
        index=pd.Index(["c", "a", "b", "d"], name="id"),
    )
    # No criteria: every row, by rank, margins as stored.
    every = meeting_criteria(table, [], "r1")
    assert list(every.index) == ["a", "b", "c", "d"]
    assert list(every["margin"]) == [0.2, 0.3, 0.1, -0.4]
    # A range: the rows inside it, their margins under it; a NaN prediction meets nothing.
    inside = meeting_criteria(table, [{"property": "band_gap", "min": 1.0, "max": 3.0}], "r1")
    assert list(inside.index) == ["a", "c"]
    assert list(inside["margin"]) == pytest.approx([0.1, 0.5])
    with pytest.raises(RankingError, match="must be below 'max'"):
        meeting_criteria(table, [{"property": "band_gap", "min": 3.0, "max": 1.0}], "r1")
    with pytest.raises(RankingError, match=r"ranking r1 has no predictions of 'density'"):
        meeting_criteria(table, [CriterionSpec(property="density", unit="g/cm3", min=1)], "r1")
