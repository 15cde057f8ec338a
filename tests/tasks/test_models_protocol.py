"""The training protocol: held-out rows never reach a fit, folds and splits respect groups,
bad training data are refused before anything is fitted."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from matscreen.tasks.errors import ModelError, SplitError
from matscreen.tasks.models import pipeline
from matscreen.tasks.models.evaluation import fit_and_evaluate
from matscreen.tasks.models.folds import make_folds
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec, SplitSpec
from matscreen.tasks.split import choose_split, group_key, record_groups

SMALL = {"n_estimators": 20, "max_depth": 3}


def _synthetic(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(scale=0.1, size=n)
    # Column 0 is each row's number, so a fit's input reveals exactly which rows it saw.
    x = np.column_stack([np.arange(n, dtype=float), x])
    return [f"r{i}" for i in range(n)], x, y


@pytest.fixture()
def fits_seen(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """Records, for every pipeline fit, the row numbers (column 0) it was given."""
    seen: list[set[int]] = []
    original = pipeline.FeaturePreprocessor.fit

    def recording_fit(self, x, y=None):  # type: ignore[no-untyped-def]
        seen.append({int(v) for v in np.asarray(x)[:, 0]})
        return original(self, x, y)

    monkeypatch.setattr(pipeline.FeaturePreprocessor, "fit", recording_fit)
    return seen


@pytest.mark.parametrize("kind", ["regressor", "two_stage_gap"])
def test_held_out_rows_never_reach_search_folds_or_final_fit(fits_seen, kind) -> None:
    ids, x, y = _synthetic(300, seed=1)
    if kind == "two_stage_gap":
        y = np.where(x[:, 1] < 0, 0.0, np.abs(y))  # about half the rows are "metals"
    labels = ["row", "a", "b", "c", "d"]
    split = choose_split(ids, SplitSpec(test_fraction=0.25, seed=4))
    position = {i: n for n, i in enumerate(ids)}
    train_rows = [position[i] for i in split.train_ids]
    test_rows = [position[i] for i in split.test_ids]
    spec = ModelSpec(
        target="y",
        kind=kind,
        params=SMALL,
        cv_folds=3,
        search="random",
        search_iterations=2,
        search_space={"max_depth": [2, 3], "n_estimators": [10, 20]},
    )
    fitted = fit_and_evaluate(
        spec,
        labels,
        (split.train_ids, x[train_rows], y[train_rows]),
        (split.test_ids, x[test_rows], y[test_rows].tolist()),
        seed=0,
    )
    model, record = fitted.model, fitted.record
    held_out = set(test_rows)
    stages = 2 if kind == "two_stage_gap" else 1
    # search: 2 candidates x 3 folds; calibration: 3 folds; final: 1 — per stage; then the
    # difficulty model of the adaptive intervals (for the two-stage model: of its
    # conditional gap interval), cross-fitted over the 3 folds, and its final fit.
    assert len(fits_seen) == stages * (2 * 3 + 3 + 1) + (3 + 1)
    assert all(rows.isdisjoint(held_out) for rows in fits_seen)
    assert set().union(*fits_seen) == set(train_rows)
    # Every fold fit misses the rows of its own validation fold: each training row is left
    # out of exactly one of the three calibration fits of the first stage.
    calibration_fits = fits_seen[stages * 6 : stages * 6 + stages * 3 : stages]
    for row in train_rows:
        assert sum(row not in rows for rows in calibration_fits) == 1
    assert record.ids == split.test_ids
    assert model.train_ids == split.train_ids
    assert model.search is not None and model.search["candidates"] == 2


def test_split_interval_holds_calibration_rows_out_of_the_fit(fits_seen) -> None:
    ids, x, y = _synthetic(200, seed=2)
    spec = ModelSpec(target="y", params=SMALL, interval="split")
    model = train_surrogate(spec, ["row", "a", "b", "c", "d"], (ids, x, y), seed=0)
    assert len(fits_seen) == 1
    calibration_size = len(model.calibration["scores"]["all"])
    assert calibration_size == 200 - len(fits_seen[0]) == 40
    assert len(model.train_ids) == 160


def test_grouped_split_keeps_every_formula_on_one_side(perovskite_csv: Path) -> None:
    with open(perovskite_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = [f"cmr:{r['material_id']}" for r in rows]
    formulas = {f"cmr:{r['material_id']}": r["formula"] for r in rows}
    for method in ("composition", "chemsys"):
        groups = {i: group_key(formulas[i], method) for i in ids}
        split = choose_split(ids, SplitSpec(method=method, test_fraction=0.2, seed=20121), groups)
        train_groups = {groups[i] for i in split.train_ids}
        test_groups = {groups[i] for i in split.test_ids}
        assert train_groups.isdisjoint(test_groups)
        assert split.n_groups == len(set(groups.values()))
        assert 0.15 < len(test_groups) / split.n_groups < 0.25
    # The file holds ABX3 and BAX3 arrangements of one composition: they must stay together,
    # which a random split does not guarantee.
    by_formula: dict[str, list[str]] = {}
    for i in ids:
        by_formula.setdefault(group_key(formulas[i], "composition"), []).append(i)
    shared = [members for members in by_formula.values() if len(members) > 1]
    assert len(shared) > 50
    random = choose_split(ids, SplitSpec(test_fraction=0.2, seed=20121))
    test = set(random.test_ids)
    assert any(len({m in test for m in members}) == 2 for members in shared)


def test_group_keys_and_missing_groups() -> None:
    assert group_key("Sr2Ti2O6", "composition") == "SrTiO3"
    assert group_key("TiSrO3", "chemsys") == "O-Sr-Ti"

    class Record:
        def __init__(self, id: str, formula: str) -> None:
            self.id, self.formula = id, formula

    groups = record_groups([Record("a", "SrTiO3"), Record("b", "Sr2Ti2O6")], "composition")
    assert groups == {"a": "SrTiO3", "b": "SrTiO3"}
    assert record_groups([Record("a", "SrTiO3")], "random") is None
    with pytest.raises(SplitError, match="needs each record's group"):
        choose_split(["a", "b"], SplitSpec(method="chemsys"))
    with pytest.raises(SplitError, match=r"no chemsys group for records \['b'\]"):
        choose_split(["a", "b"], SplitSpec(method="chemsys"), {"a": "O-Sr"})


def test_grouped_folds_never_share_a_group() -> None:
    rng = np.random.default_rng(0)
    groups = [f"g{v}" for v in rng.integers(0, 40, size=400)]
    strata = rng.integers(0, 2, size=400)
    for stratify in (None, strata):
        folds = make_folds(400, 5, seed=3, strata=stratify, groups=groups)
        assert len(folds) == 5
        for fit_rows, held_rows in folds:
            assert {groups[i] for i in fit_rows}.isdisjoint({groups[i] for i in held_rows})
        held = np.concatenate([h for _, h in folds])
        assert sorted(held.tolist()) == list(range(400))


def test_bad_training_data_is_refused_before_any_fit(fits_seen) -> None:
    ids, x, y = _synthetic(60, seed=3)
    labels = ["row", "a", "b", "c", "d"]
    spec = ModelSpec(target="gap", params=SMALL, cv_folds=5)
    with pytest.raises(
        ModelError, match=r"2 training labels are NaN or infinite, e.g. \['r3', 'r7'\]"
    ):
        y_bad = y.copy()
        y_bad[[3, 7]] = [np.nan, np.inf]
        train_surrogate(spec, labels, (ids, x, y_bad), seed=0)
    with pytest.raises(ModelError, match=r"labels are not numbers, e.g. \['r1'\]"):
        train_surrogate(spec, labels, (ids, x, [0.1, "metal", *y[2:]]), seed=0)
    with pytest.raises(ModelError, match="8 training rows with labels; at least 10 needed"):
        train_surrogate(spec, labels, (ids[:8], x[:8], y[:8]), seed=0)
    many_folds = ModelSpec(target="gap", params=SMALL, cv_folds=20)
    with pytest.raises(ModelError, match="at least 40 needed for 20-fold"):
        train_surrogate(many_folds, labels, (ids[:30], x[:30], y[:30]), seed=0)
    classifier = ModelSpec(target="stable", kind="classifier", params=SMALL)
    with pytest.raises(ModelError, match=r"needs labels 0 or 1 .* e.g. \['r0'"):
        train_surrogate(classifier, labels, (ids, x, y), seed=0)
    two_stage = ModelSpec(target="gap", kind="two_stage_gap", params=SMALL, cv_folds=5)
    few_gaps = np.where(np.arange(60) < 3, 1.5, 0.0)
    with pytest.raises(ModelError, match=r"\{'metal': 57, 'gap': 3\} training rows by class"):
        train_surrogate(two_stage, labels, (ids, x, few_gaps), seed=0)
    with pytest.raises(ModelError, match="3 groups in the training rows"):
        train_surrogate(spec, labels, (ids, x, y), seed=0, groups=["a", "b", "c"] * 20)
    with pytest.raises(ModelError, match=r"feature matrix has shape \(60, 4\)"):
        train_surrogate(spec, labels, (ids, x[:, 1:], y), seed=0)
    assert fits_seen == []
