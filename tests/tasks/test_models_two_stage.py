"""The two-stage band-gap model on hand-made data, and hull distances from real references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.estimators import DECISION_GRID, choose_decision, gap_category
from matscreen.tasks.models.pipeline import TwoStageGapRegressor, build_pipeline
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.stability import (
    hull_distances,
    hull_formation_energies,
    load_reference_entries,
)
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec


def _gaps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Metals (gap 0) where x0 < 0.5; elsewhere the gap is 1 + 2 x1, exactly."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 3))
    return x, np.where(x[:, 0] < 0.5, 0.0, 1.0 + 2.0 * x[:, 1])


def test_two_stage_model_gives_metals_zero_and_semiconductors_their_gap() -> None:
    x, y = _gaps(600, seed=0)
    x_new = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.5], [0.9, 0.25, 0.5], [0.8, 0.75, 0.5]])
    # Three columns: every tree sees all of them (the default, 30 %, suits wide tables).
    quick = {"learning_rate": 0.1, "colsample_bytree": 1.0}
    model = TwoStageGapRegressor(
        classifier=build_pipeline("xgboost", True, {"n_estimators": 50, **quick}, 0),
        regressor=build_pipeline("xgboost", False, {"n_estimators": 200, **quick}, 0),
        threshold=0.0,
    ).fit(x, y)
    probability = model.gap_probability(x_new)
    assert probability[0] < 0.1 and probability[1] < 0.1
    assert probability[2] > 0.9 and probability[3] > 0.9
    prediction = model.predict(x_new)
    # Metals get the median metal label, exactly 0, whatever the regressor would say.
    assert prediction[0] == 0.0 and prediction[1] == 0.0
    assert model.regressor_.predict(x_new[:2]).min() > 0.9  # fitted on gaps >= 1 only
    # Semiconductors get the regressor's gap: 1 + 2 x1 = 1.5 and 2.5.
    np.testing.assert_allclose(prediction[2:], [1.5, 2.5], atol=0.1)
    # A single regressor smears the step: the two-stage model beats it on the boundary's
    # metal side, where it predicts exactly 0.
    single = build_pipeline("xgboost", False, {"n_estimators": 200}, 0).fit(x, y)
    x_test, y_test = _gaps(2000, seed=1)
    metals = y_test == 0
    assert np.mean(np.abs(model.predict(x_test)[metals])) < np.mean(
        np.abs(single.predict(x_test)[metals])
    )


def test_decision_probability_minimizes_absolute_error() -> None:
    # Four semiconductors (gap 2) whose classifier probabilities are low, and metals whose
    # probabilities reach 0.3: from 0.35 up the four are called metals (error 2 each);
    # at 0.25 and below, metals at 0.3 get a gap (error 2 each).
    y = np.array([2.0, 2.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    probability = np.array([0.32, 0.33, 0.34, 0.45, 0.1, 0.1, 0.3, 0.05, 0.2])
    gap = np.array([2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    assert choose_decision(y, probability, gap, 0.0) == 0.3
    # With well-separated probabilities every threshold from 0.35 to 0.55 is exact: the
    # tie goes to the one nearest one half.
    separated = np.array([0.9, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert choose_decision(y, separated, gap, 0.0) == 0.5


def test_combined_prediction_switches_at_the_decision_probability() -> None:
    x, y = _gaps(400, seed=2)
    spec = ModelSpec(target="gap", kind="two_stage_gap", params={"n_estimators": 40}, clip_min=0.0)
    model = train_surrogate(spec, ["a", "b", "c"], ([f"g{i}" for i in range(400)], x, y), 0)
    x_test, _ = _gaps(300, seed=3)
    predicted = predict_surrogate(model, [f"t{i}" for i in range(300)], x_test, ["a", "b", "c"])
    fitted = model.fitted()
    assert fitted.decision == model.cv_metrics["gap_decision"] in DECISION_GRID
    gap = np.maximum(fitted.regressor_.predict(x_test), 0.0)
    expected = np.where(predicted.probability >= fitted.decision, gap, 0.0)
    np.testing.assert_array_equal(predicted.prediction, expected)
    assert set(gap_category(predicted.probability)) <= {"gap", "metal?", "metal"}
    scores = model.calibration["scores"]
    assert "gap" in scores and set(scores) <= {"gap", "metal?", "metal"}
    assert sum(len(v) for v in scores.values()) == 400  # every training row, out of fold
    assert np.all(predicted.lower >= 0.0) and np.all(predicted.upper >= predicted.prediction)


def test_two_stage_refuses_a_training_set_without_both_kinds() -> None:
    x, _ = _gaps(50, seed=4)
    model = TwoStageGapRegressor(
        classifier=build_pipeline("xgboost", True, {}, 0),
        regressor=build_pipeline("xgboost", False, {}, 0),
    )
    with pytest.raises(ModelError, match="1 rows with a gap above 0.0 and 49 without"):
        model.fit(x, np.r_[1.2, np.zeros(49)])


@pytest.fixture(scope="module")
def references(data_dir: Path) -> dict:
    return load_reference_entries(
        data_dir / "materials_project" / "elemental_reference_entries.json.gz"
    )


def test_hull_distance_of_li_o_against_real_references(references) -> None:
    # Known phase: Li2O at -2.0 eV/atom (x_O = 1/3). The hull from Li2O to O2 is the line
    # -2.0 + 3 (x - 1/3); at x_O = 1/2 (LiO, i.e. Li2O2) it lies at -1.5 eV/atom.
    distances = hull_distances(
        [
            ("above", "Li2O2", -1.4),
            ("on", "LiO", -1.5),
            ("below", "Li2O2", -1.7),
            ("el", "Li", 0.0),
        ],
        references,
        known=[("Li2O", -2.0)],
    )
    assert distances["above"] == pytest.approx(0.1, abs=1e-9)
    assert distances["on"] == pytest.approx(0.0, abs=1e-9)
    assert distances["below"] == pytest.approx(-0.2, abs=1e-9)
    assert distances["el"] == pytest.approx(0.0, abs=1e-9)
    # Without Li2O the hull is the line between the elements: LiO at -1.4 is 1.4 below it.
    alone = hull_distances([("x", "LiO", -1.4)], references)
    assert alone["x"] == pytest.approx(-1.4, abs=1e-9)
    # A ternary: Li2O and a known LiCoO2 on the hull; LiCoO2 predicted 0.05 higher.
    ternary = hull_distances(
        [("lco", "LiCoO2", -1.6 + 0.05)], references, known=[("Li2O", -2.0), ("LiCoO2", -1.6)]
    )
    assert ternary["lco"] == pytest.approx(0.05, abs=1e-9)


def test_hull_uses_the_reference_energies(references) -> None:
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    li, o = references["Li"].energy_per_atom, references["O"].energy_per_atom
    assert math.isfinite(li) and li < 0 and o < 0
    # The same case built by hand from total energies gives the same distance.
    li2o = PDEntry(Composition("Li2O"), 3 * -2.0 + 2 * li + o)
    candidate = PDEntry(Composition("Li2O2"), 4 * -1.4 + 2 * li + 2 * o)
    diagram = PhaseDiagram([PDEntry(Composition("Li"), li), PDEntry(Composition("O"), o), li2o])
    by_hand = diagram.get_e_above_hull(candidate)
    assert hull_distances([("c", "Li2O2", -1.4)], references, [("Li2O", -2.0)])["c"] == (
        pytest.approx(by_hand, abs=1e-9)
    )
    with pytest.raises(ModelError, match=r"Og2O: no elemental reference entry for \['Og'\]"):
        hull_distances([("x", "Og2O", -1.0)], references)


def test_hull_energy_turns_formation_energies_into_hull_distances(references) -> None:
    known = [("Li2O", -2.0), ("LiCoO2", -1.6), ("Co3O4", -1.3)]
    hull = hull_formation_energies(
        [("a", "Li2O2"), ("b", "LiCoO2"), ("c", "Li2CoO3"), ("d", "Co")], references, known
    )
    assert hull["a"] == pytest.approx(-1.5, abs=1e-9)  # on the Li2O - O2 line
    assert hull["b"] == pytest.approx(-1.6, abs=1e-9)  # a known phase on the hull
    assert hull["d"] == pytest.approx(0.0, abs=1e-9)  # an element
    predicted = {"a": -1.2, "b": -1.55, "c": -1.9, "d": 0.3}
    formulas = {"a": "Li2O2", "b": "LiCoO2", "c": "Li2CoO3", "d": "Co"}
    distances = hull_distances(
        [(i, formulas[i], predicted[i]) for i in predicted], references, known
    )
    for i, energy in predicted.items():
        assert distances[i] == pytest.approx(energy - hull[i], abs=1e-9)


def test_held_out_coverage_of_the_rows_called_semiconductors() -> None:
    from matscreen.tasks.models.evaluation import held_out_metrics, prediction_record

    rng = np.random.default_rng(3)
    x, y = _gaps(1500, seed=2)
    y = np.where(y > 0, y + rng.normal(0, 0.3, len(y)), 0.0)  # noisy gaps, exact metals
    spec = ModelSpec(
        target="gap", kind="two_stage_gap", params={"n_estimators": 60}, clip_min=0.0, cv_folds=3
    )
    ids = [f"r{i}" for i in range(len(y))]
    model = train_surrogate(spec, ["a", "b", "c"], (ids[:1000], x[:1000], y[:1000]), seed=0)
    predicted = predict_surrogate(model, ids[1000:], x[1000:], ["a", "b", "c"])
    metrics = held_out_metrics(model, prediction_record(model, predicted, y[1000:], 1000))
    called = predicted.probability >= model.estimator["decision"]
    inside = (y[1000:] >= predicted.lower) & (y[1000:] <= predicted.upper)
    assert metrics["n_predicted_gap"] == int(called.sum()) > 100
    assert metrics["coverage_predicted_gap"] == pytest.approx(inside[called].mean())
    # Calibrated on their own: near the 90 % level, not lifted by the exact metals.
    assert 0.84 <= metrics["coverage_predicted_gap"] <= 0.96
    assert metrics["coverage"] > metrics["coverage_predicted_gap"]
