"""Recall and enrichment of true hits in a hand-made ranking; next-experiment suggestions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank import screening_validation, suggest, suggest_with
from matscreen.tasks.spec import CriterionSpec, RankingSpec, SuggestSpec

GAP = CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV")
HOF = CriterionSpec(property="heat_of_formation", max=0.21, unit="eV")


def _ranking(n: int) -> pd.DataFrame:
    # Listed in reverse so that the function has to follow "rank", not the row order.
    return pd.DataFrame({"id": [f"c{i:03d}" for i in range(n)], "rank": range(1, n + 1)})[::-1]


def _reported(n: int, hits: set[int]) -> dict[str, dict[str, float | None]]:
    return {
        "band_gap": {f"c{i:03d}": 2.0 if i in hits else 0.5 for i in range(n)},
        "heat_of_formation": {f"c{i:03d}": 0.0 for i in range(n)},
    }


def test_recall_precision_and_enrichment_in_the_top_fractions() -> None:
    # 200 candidates, 8 true hits at ranks 1, 2, 5, 11, 15, 30, 120, 199.
    hits = {0, 1, 4, 10, 14, 29, 119, 198}
    result = screening_validation(_ranking(200), _reported(200, hits), [HOF, GAP])
    assert result["n_candidates"] == 200
    assert result["n_true_hits"] == 8
    assert result["hit_rate"] == 0.04
    assert result["note"] is None
    top = {row["fraction"]: row for row in result["top"]}
    # top 1 %: k = 2 holds 2 hits; 5 %: k = 10 holds 3; 10 %: k = 20 holds 5.
    assert [top[f]["k"] for f in (0.01, 0.05, 0.1)] == [2, 10, 20]
    assert [top[f]["hits"] for f in (0.01, 0.05, 0.1)] == [2, 3, 5]
    assert top[0.01]["recall"] == 2 / 8
    assert top[0.05]["recall"] == 3 / 8
    assert top[0.1]["precision"] == 5 / 20
    assert top[0.01]["enrichment"] == pytest.approx((2 / 2) / 0.04)  # 25 x random
    assert top[0.1]["enrichment"] == pytest.approx((5 / 20) / 0.04)


def test_unlabelled_candidates_are_left_out_and_counted() -> None:
    reported = _reported(10, {0, 3})
    reported["band_gap"]["c001"] = None  # ranked second, unknown
    result = screening_validation(_ranking(10), reported, [HOF, GAP], fractions=(0.2,))
    assert result["n_candidates"] == 9
    assert result["n_unlabelled"] == 1
    # Top 20 % of the 9 labelled: c000, c002 -> one hit of two.
    assert result["top"] == [
        {
            "fraction": 0.2,
            "k": 2,
            "hits": 1,
            "recall": 0.5,
            "precision": 0.5,
            "enrichment": pytest.approx(0.5 / (2 / 9)),
        }
    ]


def test_without_true_hits_recall_and_enrichment_are_none_and_said_so() -> None:
    result = screening_validation(_ranking(50), _reported(50, set()), [HOF, GAP])
    assert result["n_true_hits"] == 0
    assert result["hit_rate"] == 0.0
    assert "no true hits" in result["note"]
    for row in result["top"]:
        assert row["recall"] is None and row["enrichment"] is None
        assert row["precision"] == 0.0
    empty = screening_validation(_ranking(0), _reported(0, set()), [HOF, GAP])
    assert empty["hit_rate"] is None and empty["top"][0]["k"] == 0


def test_validation_refuses_missing_properties_and_bad_fractions() -> None:
    with pytest.raises(RankingError, match="no true values of 'heat_of_formation'"):
        screening_validation(_ranking(5), {"band_gap": {}}, [HOF, GAP])
    with pytest.raises(RankingError, match=r"top fraction must lie in \(0, 1\], got 0"):
        screening_validation(_ranking(5), _reported(5, set()), [GAP], fractions=(0.0,))


def _scored() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "formula": ["SrTiO3", "BaZrO3", "CaSnO3", "KNbO3", "LaAlO3", "NaTaO3"],
            "p_success": [0.95, 0.5, 0.1, 0.0, 0.7, 0.3],
            "rank": [1, 3, 5, 6, 2, 4],
        }
    )


def test_suggestions_trade_the_hit_probability_against_the_outcome_entropy() -> None:
    scored = _scored()
    acquisition = {
        i: p + 1.0 * entropy([p, 1 - p], base=2)
        for i, p in zip(scored["id"], scored["p_success"], strict=True)
    }
    expected = sorted(acquisition, key=lambda i: -acquisition[i])
    suggested = suggest(scored, 4, kappa=1.0)
    assert list(suggested["id"]) == expected[:4] == ["e", "b", "a", "f"]
    assert list(suggested["suggestion"]) == [1, 2, 3, 4]
    assert list(suggested["rank"]) == [2, 3, 1, 4]
    assert suggested.loc[1, "information_bits"] == pytest.approx(1.0)
    assert suggested.loc[0, "acquisition"] == pytest.approx(acquisition["e"])
    # κ = 0 is the probability ranking.
    assert list(suggest(scored, 3, kappa=0.0)["id"]) == ["a", "e", "b"]


def test_suggestions_skip_the_shortlist_when_asked() -> None:
    spec = RankingSpec(method="probability", suggest=SuggestSpec(n=2, kappa=1.0))
    assert list(suggest_with(_scored(), spec, shortlist=["e", "a"])["id"]) == ["b", "f"]
    keep = RankingSpec(
        method="probability", suggest=SuggestSpec(n=2, kappa=1.0, exclude_shortlist=False)
    )
    assert list(suggest_with(_scored(), keep, shortlist=["e", "a"])["id"]) == ["e", "b"]
    assert suggest_with(_scored(), RankingSpec(), shortlist=[]) is None


def test_suggestions_need_probabilities() -> None:
    with pytest.raises(RankingError, match="no p_success"):
        suggest(_scored().drop(columns=["p_success"]), 2)


def test_suggestions_among_long_shots_go_by_log_probability_then_margin() -> None:
    # Every candidate is all but certain to fail: all acquisitions round to 0.
    p_hof = np.array([1e-7, 0.8, 1e-200, 0.0, 0.0])
    p_gap = np.array([1e-7, 1e-12, 1e-200, 0.5, 0.0])
    ranked = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "p_heat_of_formation": p_hof,
            "p_band_gap": p_gap,
            "p_success": p_hof * p_gap,  # c's product underflows to 0
            "margin": [-0.2, -0.3, -0.9, -0.1, -0.05],
        }
    )
    assert ranked.loc[2, "p_success"] == 0.0
    suggested = suggest(ranked, 5, kappa=1.0)
    assert (suggested["acquisition"] < 1e-9).all()
    # b (likely stable, gap far off) before a (both properties unlikely) before c; d and e
    # each have a property with probability 0, so the smaller miss (e) comes first.
    assert list(suggested["id"]) == ["b", "a", "c", "e", "d"]
    assert list(suggested["log10_p_success"][:3]) == pytest.approx(
        [math.log10(0.8) - 12, -14.0, -400.0]
    )
    assert np.isneginf(suggested["log10_p_success"][3:]).all()
    # Without per-property columns the logarithm comes from p_success itself.
    alone = suggest(ranked.drop(columns=["p_heat_of_formation", "p_band_gap"]), 5)
    assert list(alone["id"]) == ["b", "a", "e", "d", "c"]
