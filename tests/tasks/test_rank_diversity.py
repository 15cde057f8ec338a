"""Shortlists spread over chemistries: caps per group and maximal marginal relevance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank import candidate_groups, select_shortlist, shortlist_with
from matscreen.tasks.spec import DiversitySpec, RankingSpec


def _ranking(formulas: list[str], p: list[float] | None = None) -> pd.DataFrame:
    n = len(formulas)
    return pd.DataFrame(
        {
            "id": [f"c{i:02d}" for i in range(n)],
            "formula": formulas,
            "p_success": p if p is not None else list(np.linspace(0.9, 0.1, n)),
            "rank": range(1, n + 1),
        }
    )


SR_TI_O = ["SrTiO3", "Sr2TiO4", "Sr3Ti2O7", "SrTi2O5", "Sr4Ti3O10"]
OTHERS = ["BaZrO3", "CaSnO3", "KNbO3", "LaAlO3"]


def test_groups_are_chemical_systems_or_anonymized_formulas() -> None:
    ranked = _ranking(["SrTiO3", "Sr2TiO4", "BaZrO3", "NaCl"])
    assert list(candidate_groups(ranked, "chemsys")) == ["O-Sr-Ti", "O-Sr-Ti", "Ba-O-Zr", "Cl-Na"]
    assert list(candidate_groups(ranked, "prototype")) == ["ABC3", "AB2C4", "ABC3", "AB"]


def test_cap_per_chemical_system_lets_other_systems_fill_the_shortlist() -> None:
    ranked = _ranking(SR_TI_O + OTHERS)
    shortlist = select_shortlist(ranked, 5, by="chemsys", cap=2)
    assert shortlist.ids == ["c00", "c01", "c05", "c06", "c07"]
    table = shortlist.table.set_index("id")
    assert list(table["skip_reason"]) == [
        "",
        "",
        "cap_reached",
        "cap_reached",
        "cap_reached",
        "",
        "",
        "",
        "not_reached",
    ]
    assert table["shortlist_position"].tolist()[:2] == [1, 2]
    assert table.loc["c05", "shortlist_position"] == 3
    assert pd.isna(table.loc["c02", "shortlist_position"])
    assert list(shortlist.frame()["formula"]) == ["SrTiO3", "Sr2TiO4", "BaZrO3", "CaSnO3", "KNbO3"]


def test_without_enough_groups_the_shortlist_stays_short() -> None:
    shortlist = select_shortlist(_ranking(SR_TI_O), 4, by="chemsys", cap=2)
    assert shortlist.ids == ["c00", "c01"]
    assert list(shortlist.table["skip_reason"][2:]) == ["cap_reached"] * 3


def test_cap_per_prototype_prefers_a_prototype_column() -> None:
    ranked = _ranking(["SrTiO3", "BaZrO3", "Sr2TiO4", "NaCl"])
    assert select_shortlist(ranked, 3, by="prototype", cap=1).ids == ["c00", "c02", "c03"]
    ranked["prototype"] = ["perovskite", "perovskite", "perovskite", "rocksalt"]
    shortlist = select_shortlist(ranked, 3, by="prototype", cap=2)
    assert shortlist.ids == ["c00", "c01", "c03"]
    assert shortlist.table.loc[2, "skip_reason"] == "cap_reached"


def _features() -> pd.DataFrame:
    # c00 and c01 are near-duplicates; c02 is far from both; c03 lies between.
    return pd.DataFrame(
        {"f1": [0.0, 0.05, 3.0, 1.0], "f2": [0.0, 0.0, 3.0, 2.0], "constant": [1.0] * 4},
        index=["c00", "c01", "c02", "c03"],
    )


def _mmr_by_hand(relevance: np.ndarray, lam: float, metric: str = "euclidean") -> str:
    """The second pick of MMR after c00, computed directly from the definition."""
    x = _features()[["f1", "f2"]].to_numpy()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    if metric == "euclidean":
        similarity = 1.0 / (1.0 + np.linalg.norm(z - z[0], axis=1) / np.sqrt(2))
    else:
        similarity = z @ z[0] / (np.linalg.norm(z, axis=1) * np.linalg.norm(z[0]))
    value = lam * relevance - (1 - lam) * similarity
    value[0] = -np.inf
    return f"c{int(np.argmax(value)):02d}"


def test_mmr_prefers_a_dissimilar_candidate_over_a_near_duplicate() -> None:
    p = [0.9, 0.88, 0.6, 0.5]
    ranked = _ranking(["SrTiO3", "SrTiO3", "KNbO3", "BaZrO3"], p)
    shortlist = select_shortlist(ranked, 2, features=_features(), mmr_lambda=0.5, score="p_success")
    relevance = np.array(p) / max(p)  # relative to the most probable candidate
    assert shortlist.ids == ["c00", _mmr_by_hand(relevance, 0.5)] == ["c00", "c02"]
    table = shortlist.table.set_index("id")
    assert table.loc["c01", "skip_reason"] == "too_similar"
    assert table.loc["c01", "similar_to"] == "c00"
    assert table.loc["c03", "skip_reason"] == "not_reached"
    # With all weight on relevance, the near-duplicate comes second again.
    only_score = select_shortlist(ranked, 2, features=_features(), mmr_lambda=1.0)
    assert only_score.ids == ["c00", "c01"]
    cosine = select_shortlist(
        ranked, 2, features=_features(), mmr_lambda=0.5, metric="cosine", score="p_success"
    )
    assert cosine.ids[1] == _mmr_by_hand(relevance, 0.5, "cosine") == "c02"
    # Without a score, relevance is size / (size + rank - 1): 1, 2/3, 1/2, 2/5.
    by_rank = select_shortlist(ranked, 2, features=_features(), mmr_lambda=0.6)
    assert by_rank.ids[1] == _mmr_by_hand(2 / np.array([2, 3, 4, 5]), 0.6)


def test_mmr_and_cap_combine_through_the_spec() -> None:
    p = [0.9, 0.88, 0.6, 0.5]
    ranked = _ranking(["SrTiO3", "SrTiO3", "KNbO3", "BaZrO3"], p)
    # λ = 0.9 alone takes the near-duplicate second ...
    mmr_only = select_shortlist(ranked, 2, features=_features(), mmr_lambda=0.9, score="p_success")
    assert mmr_only.ids[1] == _mmr_by_hand(np.array(p) / max(p), 0.9) == "c01"
    # ... which one per chemical system forbids.
    spec = RankingSpec(diversity=DiversitySpec(by="chemsys", cap=1, mmr_lambda=0.9))
    shortlist = shortlist_with(ranked, 3, spec, features=_features())
    assert shortlist.ids == ["c00", "c02", "c03"]
    assert shortlist.table.set_index("id").loc["c01", "skip_reason"] == "cap_reached"


def test_mmr_needs_a_feature_row_for_every_candidate() -> None:
    ranked = _ranking(["SrTiO3", "SrTiO3", "KNbO3", "BaZrO3"])
    with pytest.raises(RankingError, match=r"no feature row for 1 candidates: \['c03'\]"):
        select_shortlist(ranked, 2, features=_features().iloc[:3], mmr_lambda=0.5)
    with pytest.raises(RankingError, match="needs feature vectors"):
        select_shortlist(ranked, 2, mmr_lambda=0.5)


def test_an_unreadable_formula_is_named() -> None:
    with pytest.raises(RankingError, match=r"formula 'Xx9\?' of candidate c01"):
        select_shortlist(_ranking(["SrTiO3", "Xx9?"]), 2, by="chemsys", cap=1)


def test_a_large_pool_is_shortlisted_among_its_best_and_the_window_widens_for_a_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With maximal marginal relevance only the best-ranked candidates' features are read;
    # when a cap per chemical system leaves that window short, it widens until the
    # shortlist is full, and the candidates never considered are "not reached".
    import matscreen.tasks.rank.diversity as diversity
    from matscreen.tasks.rank import shortlist_within

    monkeypatch.setattr(diversity, "MMR_WINDOW", 50)
    n = 1000
    others = ["Na", "K", "Rb", "Cs", "Mg", "La", "Y", "Sc", "Bi", "Pb"]
    formulas = ["SrTiO3", "BaTiO3", "CaTiO3"] * 30 + [
        f"{others[i % len(others)]}TaO3" for i in range(n - 90)
    ]
    ranked = pd.DataFrame(
        {"id": [f"c{i}" for i in range(n)], "formula": formulas, "rank": np.arange(1, n + 1)}
    )
    ranked["p_success"] = np.linspace(0.9, 0.1, n)
    rng = np.random.default_rng(0)
    features = pd.DataFrame(rng.normal(size=(n, 4)), index=ranked["id"])
    asked: list[int] = []

    def features_of(ids: list[str]) -> pd.DataFrame:
        asked.append(len(ids))
        return features.loc[ids]

    spec = RankingSpec(diversity=DiversitySpec(by="chemsys", cap=1, mmr_lambda=0.7))
    chosen = shortlist_within(ranked, 6, spec, features_of)
    assert len(chosen.ids) == 6 and asked == [50, 200]
    assert len(chosen.table) == n and chosen.table["id"].is_unique
    tail = chosen.table.iloc[200:]
    assert (tail["skip_reason"] == diversity.NOT_REACHED).all()
    assert tail["shortlist_position"].isna().all()
    # Without maximal marginal relevance no feature is read.
    plain = shortlist_within(ranked, 6, RankingSpec(), features_of)
    assert plain.ids == [f"c{i}" for i in range(6)] and asked == [50, 200]
