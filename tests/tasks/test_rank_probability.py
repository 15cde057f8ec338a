"""Probability of success from hand-made predictive distributions, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank import (
    expected_funnel,
    rank_by_probability,
    rank_candidates,
    success_probability,
)
from matscreen.tasks.spec import CriterionSpec

HOF = CriterionSpec(property="heat_of_formation", max=0.21, unit="eV")
GAP = CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV")
CRITERIA = [HOF, GAP]
Z90 = norm.ppf(0.95)  # half-width of a central 90 % interval in standard deviations

# Each candidate: (heat of formation, its 90 % half-width, band gap, its half-width).
DISTRIBUTIONS = {
    "a": (0.0, 0.1, 2.0, 0.5),
    "b": (0.15, 0.2, 2.2, 0.2),
    "c": (0.0, 0.05, 1.45, 0.3),  # gap just inside its range, but unsure
    "d": (-0.5, 2.0, 2.25, 3.0),  # the largest margins, and intervals wider than the range
    "e": (0.4, 0.1, 2.0, 0.1),  # very likely too unstable
}


def _interval_frame() -> pd.DataFrame:
    ids = list(DISTRIBUTIONS)
    hof = np.array([DISTRIBUTIONS[i][0] for i in ids])
    hof_w = np.array([DISTRIBUTIONS[i][1] for i in ids])
    gap = np.array([DISTRIBUTIONS[i][2] for i in ids])
    gap_w = np.array([DISTRIBUTIONS[i][3] for i in ids])
    return pd.DataFrame(
        {
            "id": ids,
            "formula": ["SrTiO3", "BaZrO3", "CaSnO3", "KNbO3", "LaAlO3"],
            "pred_heat_of_formation": hof,
            "lower_heat_of_formation": hof - hof_w,
            "upper_heat_of_formation": hof + hof_w,
            "pred_band_gap": gap,
            "lower_band_gap": gap - gap_w,
            "upper_band_gap": gap + gap_w,
        }
    )


def _by_hand(candidate: str) -> tuple[float, float]:
    hof, hof_w, gap, gap_w = DISTRIBUTIONS[candidate]
    p_hof = norm.cdf(0.21, loc=hof, scale=hof_w / Z90)
    p_gap = norm.cdf(3.1, loc=gap, scale=gap_w / Z90) - norm.cdf(1.4, loc=gap, scale=gap_w / Z90)
    return p_hof, p_gap


def test_probabilities_from_intervals_match_gaussians_fitted_by_hand() -> None:
    scored = success_probability(_interval_frame(), CRITERIA, interval_level=0.9)
    for _, row in scored.iterrows():
        p_hof, p_gap = _by_hand(row["id"])
        assert row["p_heat_of_formation"] == pytest.approx(p_hof, rel=1e-9)
        assert row["p_band_gap"] == pytest.approx(p_gap, rel=1e-9)
        assert row["p_success"] == pytest.approx(p_hof * p_gap, rel=1e-9)
    assert list(scored["id"]) == list(DISTRIBUTIONS)  # row order kept


def test_probability_order_weighs_uncertainty_where_the_margin_does_not() -> None:
    ranked = rank_by_probability(_interval_frame(), CRITERIA, interval_level=0.9)
    by_hand = {i: math.prod(_by_hand(i)) for i in DISTRIBUTIONS}
    expected = sorted(by_hand, key=lambda i: -by_hand[i])
    assert list(ranked["id"]) == expected == ["a", "b", "c", "d", "e"]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    # By margin alone, d (margins 0.71 and 0.85 eV) comes first despite its intervals.
    assert rank_candidates(_interval_frame(), CRITERIA)["id"].iloc[0] == "d"
    # Margin columns travel with the probability ranking.
    assert ranked.set_index("id").loc["d", "margin"] == pytest.approx(0.71)


def test_standard_deviations_give_the_same_probabilities_as_matching_intervals() -> None:
    intervals = _interval_frame()
    stds = intervals[["id", "formula", "pred_heat_of_formation", "pred_band_gap"]].copy()
    stds["std_heat_of_formation"] = [DISTRIBUTIONS[i][1] / Z90 for i in stds["id"]]
    stds["std_band_gap"] = [DISTRIBUTIONS[i][3] / Z90 for i in stds["id"]]
    from_std = success_probability(stds, CRITERIA)["p_success"].to_numpy()
    from_interval = success_probability(intervals, CRITERIA, 0.9)["p_success"].to_numpy()
    np.testing.assert_allclose(from_std, from_interval, rtol=1e-12)


def test_levels_may_differ_per_property() -> None:
    frame = _interval_frame()
    scored = success_probability(frame, CRITERIA, {"heat_of_formation": 0.8, "band_gap": 0.9})
    hof, hof_w = DISTRIBUTIONS["a"][:2]
    expected = norm.cdf(0.21, loc=hof, scale=hof_w / norm.ppf(0.9))
    assert scored.loc[0, "p_heat_of_formation"] == pytest.approx(expected, rel=1e-9)


def test_quantiles_give_a_piecewise_linear_cdf_with_linear_tails() -> None:
    # Quantiles 0.1, 0.5, 0.9 at 1.0, 2.0, 4.0 eV; "y" gives them crossed (sorted first).
    frame = pd.DataFrame(
        {
            "id": ["x", "y"],
            "formula": ["SrTiO3", "BaTiO3"],
            "q0.1_band_gap": [1.0, 2.0],
            "q0.5_band_gap": [2.0, 1.0],
            "q0.9_band_gap": [4.0, 4.0],
        }
    )
    scored = success_probability(frame, [GAP])
    # F(3.1) = 0.5 + 0.4 * 1.1 / 2 = 0.72; F(1.4) = 0.1 + 0.4 * 0.4 / 1 = 0.26
    np.testing.assert_allclose(scored["p_band_gap"], [0.46, 0.46])

    def p_below(bound: float) -> float:
        criterion = CriterionSpec(property="band_gap", max=bound, unit="eV")
        return float(success_probability(frame.iloc[:1], [criterion])["p_success"].iloc[0])

    # Lower tail continues the first segment's slope 0.4 per eV, upper tail 0.2 per eV.
    assert p_below(0.9) == pytest.approx(0.1 - 0.1 * 0.4)
    assert p_below(0.5) == 0.0
    assert p_below(4.25) == pytest.approx(0.9 + 0.25 * 0.2)
    assert p_below(5.0) == 1.0


def test_zero_spread_is_a_point_mass_with_inclusive_bounds() -> None:
    frame = pd.DataFrame(
        {
            "id": ["on", "off"],
            "formula": ["SrTiO3", "BaTiO3"],
            "pred_band_gap": [1.4, 1.39],
            "std_band_gap": [0.0, 0.0],
        }
    )
    assert list(success_probability(frame, [GAP])["p_band_gap"]) == [1.0, 0.0]


def test_a_clipped_interval_keeps_the_spread_of_each_side() -> None:
    # A band gap interval cut at 0 on the left: 0.1 eV below the prediction, 0.5 above.
    frame = pd.DataFrame(
        {
            "id": ["m"],
            "formula": ["SrTiO3"],
            "pred_band_gap": [0.1],
            "lower_band_gap": [0.0],
            "upper_band_gap": [0.6],
        }
    )
    above = CriterionSpec(property="band_gap", min=0.05, unit="eV")
    below = CriterionSpec(property="band_gap", min=0.5, unit="eV")
    p_low = success_probability(frame, [above], 0.9)["p_success"].iloc[0]
    p_high = success_probability(frame, [below], 0.9)["p_success"].iloc[0]
    assert p_low == pytest.approx(norm.sf(0.05, loc=0.1, scale=0.1 / Z90), rel=1e-9)
    assert p_high == pytest.approx(norm.sf(0.5, loc=0.1, scale=0.5 / Z90), rel=1e-9)


def test_infinite_intervals_say_nothing_and_criteria_on_one_property_intersect() -> None:
    frame = pd.DataFrame(
        {
            "id": ["u"],
            "formula": ["SrTiO3"],
            "pred_heat_of_formation": [0.0],
            "std_heat_of_formation": [math.inf],
            "pred_band_gap": [2.0],
            "std_band_gap": [math.inf],
        }
    )
    scored = success_probability(frame, CRITERIA)
    assert scored.loc[0, "p_heat_of_formation"] == 0.5  # one-sided range, flat distribution
    assert scored.loc[0, "p_band_gap"] == 0.0

    frame["std_band_gap"] = 1.0
    two = [GAP, CriterionSpec(property="band_gap", min=2.0, unit="eV")]
    p = success_probability(frame, two)["p_band_gap"].iloc[0]
    assert p == pytest.approx(norm.cdf(3.1, 2.0, 1.0) - 0.5, rel=1e-9)


def test_a_class_probability_gives_the_chance_of_a_zero_one_property() -> None:
    frame = pd.DataFrame(
        {
            "id": ["s", "t"],
            "formula": ["SrTiO3", "BaTiO3"],
            "prob_stable": [0.8, 0.25],
            "pred_band_gap": [2.0, 2.0],
            "std_band_gap": [0.5, 0.5],
        }
    )
    stable = CriterionSpec(property="stable", min=0.5, unit="")
    scored = success_probability(frame, [stable, GAP])
    p_gap = norm.cdf(3.1, 2.0, 0.5) - norm.cdf(1.4, 2.0, 0.5)
    np.testing.assert_allclose(scored["p_stable"], [0.8, 0.25])
    np.testing.assert_allclose(scored["p_success"], [0.8 * p_gap, 0.25 * p_gap])
    unstable = CriterionSpec(property="stable", max=0.5, unit="")
    np.testing.assert_allclose(success_probability(frame, [unstable])["p_stable"], [0.2, 0.75])
    frame.loc[1, "prob_stable"] = 1.5
    with pytest.raises(RankingError, match=r"prob_stable is outside \[0, 1\].*\['t'\]"):
        success_probability(frame, [stable])


def test_expected_funnel_sums_the_probabilities() -> None:
    scored = success_probability(_interval_frame(), CRITERIA, 0.9)
    funnel = dict(expected_funnel(scored, CRITERIA))
    assert funnel["heat_of_formation"] == pytest.approx(sum(_by_hand(i)[0] for i in "abcde"))
    assert funnel["every criterion"] == pytest.approx(sum(math.prod(_by_hand(i)) for i in "abcde"))


def test_missing_uncertainty_is_an_error_not_a_zero_spread() -> None:
    frame = _interval_frame().drop(columns=["lower_band_gap", "upper_band_gap"])
    with pytest.raises(RankingError, match=r"no uncertainty for 'band_gap'.*std_band_gap"):
        success_probability(frame, CRITERIA, 0.9)
    frame = _interval_frame().drop(columns=["pred_band_gap"])
    with pytest.raises(RankingError, match=r"no predictions for 'band_gap' \(pred_band_gap\)"):
        success_probability(frame, CRITERIA, 0.9)


def test_bad_uncertainty_is_refused_with_the_candidates_named() -> None:
    frame = _interval_frame()
    with pytest.raises(RankingError, match="coverage level of the heat_of_formation"):
        success_probability(frame, CRITERIA)
    frame.loc[2, "upper_band_gap"] = np.nan
    with pytest.raises(RankingError, match=r"band_gap interval is missing.*\['c'\]"):
        success_probability(frame, CRITERIA, 0.9)
    frame = _interval_frame()
    frame.loc[1, "lower_band_gap"] = 3.0
    with pytest.raises(RankingError, match=r"outside its interval.*\['b'\]"):
        success_probability(frame, CRITERIA, 0.9)
    frame = _interval_frame()
    frame["std_band_gap"] = 0.1
    with pytest.raises(RankingError, match="more than one form"):
        success_probability(frame, CRITERIA, 0.9)
    frame = _interval_frame().drop(columns=["lower_band_gap", "upper_band_gap"])
    frame["std_band_gap"] = [0.1, -0.1, 0.1, 0.1, 0.1]
    with pytest.raises(RankingError, match=r"std_band_gap is negative.*\['b'\]"):
        success_probability(frame, CRITERIA, 0.9)
