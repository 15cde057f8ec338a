"""Held-out scoring, baselines, importance, plots, model card and the search methods."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from matscreen.tasks.models.baselines import magpie_columns, magpie_rf_baseline
from matscreen.tasks.models.evaluation import evaluate
from matscreen.tasks.models.interpret import model_card, parity_plot, residual_plot
from matscreen.tasks.models.metrics import classification_metrics
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec

LABELS = ["MagpieData mean Number", "MagpieData range Row", "noise 1", "noise 2", "density"]


def _data(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    # The label depends on a Magpie column and on the density column only.
    y = 2.0 * x[:, 0] + np.sin(3 * x[:, 4]) + rng.normal(scale=0.1, size=n)
    return [f"e{seed}-{i}" for i in range(n)], x, y


def test_classification_metrics_agree_with_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=500)
    probability = np.clip(truth * 0.4 + rng.uniform(0, 0.6, size=500), 0, 1)
    predicted = (probability >= 0.5).astype(int)
    metrics = classification_metrics(truth, probability)
    assert metrics["precision"] == pytest.approx(precision_score(truth, predicted))
    assert metrics["recall"] == pytest.approx(recall_score(truth, predicted))
    assert metrics["f1"] == pytest.approx(f1_score(truth, predicted))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(truth, probability))
    assert metrics["positives"] == int(truth.sum())
    assert np.isnan(classification_metrics(np.zeros(5), np.full(5, 0.2))["roc_auc"])


def test_evaluation_scores_model_and_baselines_on_the_same_rows() -> None:
    train = _data(600, seed=1)
    test = _data(300, seed=2)
    model = train_surrogate(
        ModelSpec(
            target="y",
            params={"n_estimators": 150, "max_depth": 3, "colsample_bytree": 1.0},
        ),
        LABELS,
        train,
        0,
    )
    result = evaluate(model, LABELS, train, test, seed=0, importance_repeats=3, baseline_trees=50)
    metrics = result.metrics
    assert metrics["n_train"] == 600 and metrics["n_test"] == 300
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(test[2] - result.predictions.prediction)))
    assert metrics["dummy_mae"] == pytest.approx(np.mean(np.abs(test[2] - np.mean(train[2]))))
    inside = (test[2] >= result.predictions.lower) & (test[2] <= result.predictions.upper)
    assert metrics["coverage"] == pytest.approx(inside.mean())
    names = [b["name"] for b in result.baselines]
    assert names == ["dummy (mean)", "dummy (median)", "Magpie + RF"]
    dummy, median, forest = result.baselines
    assert dummy["mae"] == pytest.approx(metrics["dummy_mae"])
    assert median["mae"] == pytest.approx(np.mean(np.abs(test[2] - np.median(train[2]))))
    # The forest sees the two Magpie columns only, so it cannot use the density term.
    assert forest["n_features"] == 2 and magpie_columns(LABELS) == [0, 1]
    assert metrics["mae"] < forest["mae"] < dummy["mae"]
    again = magpie_rf_baseline(
        "regressor", LABELS, (train[1], train[2]), (test[1], test[2]), 0, n_estimators=50
    )
    assert again is not None and again["mae"] == forest["mae"]
    # Permutation importance finds the two informative columns first.
    assert {r["feature"] for r in result.importance[:2]} == {LABELS[0], "density"}
    assert result.importance[0]["importance"] > 10 * abs(result.importance[-1]["importance"])


def test_plots_and_card_describe_the_model() -> None:
    train, test = _data(300, seed=3), _data(100, seed=4)
    model = train_surrogate(ModelSpec(target="y", params={"n_estimators": 40}), LABELS, train, 0)
    result = evaluate(model, LABELS, train, test, seed=0, importance_repeats=2, baseline_trees=20)
    predicted = result.predictions
    for png in (
        parity_plot("y", "eV", test[2], predicted.prediction, predicted.lower, predicted.upper),
        residual_plot("y", "eV", test[2], predicted.prediction),
    ):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    card = model_card(
        model,
        {"source": "data.csv", "sha256": "abc", "n_rows": 400, "unit": "eV"},
        {"method": "random", "seed": 0, "test_fraction": 0.25, "n_train": 300, "n_test": 100},
        result.metrics,
        result.baselines,
        result.importance,
    )
    for section in (
        "## Data",
        "## Split",
        "## Held-out metrics",
        "## Intended use",
        "## Limitations",
    ):
        assert section in card
    assert f"| Magpie + RF | {result.baselines[2]['mae']:.4g}" in card
    assert f"held-out coverage {result.metrics['coverage']:.4g}" in card


@pytest.mark.parametrize("method", ["random", "halving"])
def test_search_picks_parameters_by_cross_validation(method: str) -> None:
    train = _data(400, seed=5)
    spec = ModelSpec(
        target="y",
        params={"n_estimators": 60},
        search=method,
        search_iterations=4,
        search_space={"max_depth": [1, 4], "learning_rate": [0.01, 0.3]},
        cv_folds=3,
    )
    model = train_surrogate(spec, LABELS, train, 0)
    assert model.search is not None
    assert model.search["method"] == method and model.search["candidates"] == 4
    # Stumps at a small rate cannot fit sin(3 x); the search must not choose them.
    best = model.search["best_params"]
    assert (best["max_depth"], best["learning_rate"]) != (1, 0.01)
    assert model.params["max_depth"] == best["max_depth"]
    assert model.search["best_cv_score"] < 0  # negated MAE


def test_prediction_record_metrics_include_interval_coverage() -> None:
    from matscreen.tasks.models.metrics import regression_metrics
    from matscreen.tasks.models.records import PredictionRecord

    record = PredictionRecord(
        target="gap",
        ids=["a", "b", "c", "d"],
        y_true=[1.0, 2.0, 4.0, None],
        y_pred=[1.5, 2.0, 3.0, 9.0],
        baseline=2.0,
        n_train=10,
        lower=[1.0, 1.5, 3.5, 8.0],
        upper=[2.0, 2.5, 3.9, 10.0],
        level=0.9,
    )
    metrics = regression_metrics(record)
    assert metrics["mae"] == pytest.approx(0.5) and metrics["n_test"] == 3
    assert metrics["coverage"] == pytest.approx(2 / 3)  # 4.0 lies above [3.5, 3.9]
    assert metrics["mean_width"] == pytest.approx((1.0 + 1.0 + 0.4) / 3)
    assert metrics["level"] == 0.9


def test_search_on_a_dask_cluster_matches_the_serial_search() -> None:
    from distributed import LocalCluster

    train = _data(300, seed=6)
    spec = ModelSpec(
        target="y",
        params={"n_estimators": 40},
        search="random",
        search_iterations=3,
        search_space={"max_depth": [1, 3, 5], "learning_rate": [0.05, 0.3]},
        cv_folds=3,
    )
    serial = train_surrogate(spec, LABELS, train, 0)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster:
        on_dask = train_surrogate(spec, LABELS, train, 0, dask_address=cluster.scheduler_address)
    assert on_dask.search["best_params"] == serial.search["best_params"]
    assert on_dask.search["best_cv_score"] == pytest.approx(serial.search["best_cv_score"])


def test_metrics_are_scored_from_the_record_on_its_finite_labels_only() -> None:
    from matscreen.tasks.models.evaluation import held_out_metrics, prediction_record
    from matscreen.tasks.models.prediction import predict_surrogate

    train = _data(300, seed=3)
    ids, x, y = _data(40, seed=4)
    model = train_surrogate(
        ModelSpec(target="y", params={"n_estimators": 30, "max_depth": 3}), LABELS, train, 0
    )
    predicted = predict_surrogate(model, ids, x, LABELS)
    labels = np.array(y, dtype=float)
    labels[:5] = np.nan  # structures nobody has computed
    record = prediction_record(model, predicted, labels, 300)
    assert record.y_true[:5] == [None] * 5
    metrics = held_out_metrics(model, record)
    rows = slice(5, None)
    assert metrics["n_test"] == 35 and metrics["n_train"] == 300
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(y[rows] - predicted.prediction[rows])))
    inside = (y[rows] >= predicted.lower[rows]) & (y[rows] <= predicted.upper[rows])
    assert metrics["coverage"] == pytest.approx(inside.mean())
    assert sum(q["n"] for q in metrics["coverage_by_width_quintile"]) == 35
    # A record built by hand with NaN labels is scored on the same rows.
    from dataclasses import replace

    nan_labels = replace(record, y_true=[float("nan")] * 5 + record.y_true[5:])
    assert held_out_metrics(model, nan_labels) == metrics
    # No labels at all: nothing to score, no error.
    empty = held_out_metrics(model, replace(record, y_true=[None] * 40))
    assert empty["n_test"] == 0 and np.isnan(empty["mae"])
