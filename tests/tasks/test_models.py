"""Surrogates on real perovskite features; metrics from prediction records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from matscreen.tasks.dataset import candidate_arrays, labels_of, training_arrays
from matscreen.tasks.errors import ModelError
from matscreen.tasks.featurize import featurize_batch, join_batches, preset_config
from matscreen.tasks.models import (
    PredictionRecord,
    SurrogateModel,
    fit_and_evaluate,
    predict_surrogate,
    regression_metrics,
)
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import CsvCifSourceSpec, ModelSpec, PropertySpec, SplitSpec
from matscreen.tasks.split import choose_split


@pytest.fixture(scope="module")
def dataset(perovskite_csv: Path):
    spec = CsvCifSourceSpec(
        kind="csv_cif",
        name="cmr",
        path=perovskite_csv,
        id_column="material_id",
        properties={"heat_of_formation": PropertySpec(column="heat_ref", unit="eV")},
        licence="MIT",
        citation=["Castelli et al. (2012)"],
        limit=500,
    )
    records = read_source(spec).records
    table = join_batches(
        [featurize_batch([(r.id, r.structure) for r in records], preset_config("fast"))]
    )
    split = choose_split([r.id for r in records], SplitSpec(test_fraction=0.2, seed=11))
    return records, table, split


def test_model_beats_the_mean_baseline_on_held_out_perovskites(dataset) -> None:
    records, table, split = dataset
    labels = labels_of(records, "heat_of_formation")
    columns = list(table.frame.columns)
    fitted = fit_and_evaluate(
        ModelSpec(target="heat_of_formation", params={"n_estimators": 200}),
        columns,
        training_arrays(table.frame, labels, split.train_ids),
        candidate_arrays(table.frame, labels, split.test_ids),
        seed=0,
        importance_repeats=2,
    )
    model, held_out = fitted.model, fitted.record
    metrics = regression_metrics(held_out)
    assert metrics["mae"] == pytest.approx(fitted.evaluation.metrics["mae"])
    assert metrics["n_train"] == len(split.train_ids) and metrics["n_test"] == len(split.test_ids)
    assert 70 < metrics["n_test"] < 130  # about a fifth of 500
    assert held_out.ids == split.test_ids
    assert set(model.train_ids) == set(split.train_ids)
    assert metrics["mae"] < 0.8 * metrics["dummy_mae"]
    assert metrics["r2"] > 0.3
    # Every held-out row has a 90 % interval around its prediction.
    assert held_out.level == 0.9
    rows = zip(held_out.lower, held_out.y_pred, held_out.upper, strict=True)
    assert all(lo <= p <= hi for lo, p, hi in rows)
    # The Magpie + random forest baseline is scored on the same rows, and loses.
    forest = next(b for b in fitted.evaluation.baselines if b["name"] == "Magpie + RF")
    assert forest["mae"] > metrics["mae"]
    assert fitted.evaluation.importance[0]["importance"] > 0
    # The stored document reproduces the predictions exactly.
    _, x_test, _ = candidate_arrays(table.frame, labels, split.test_ids)
    loaded = SurrogateModel.from_json(model.model_json)
    again = predict_surrogate(loaded, split.test_ids, x_test, columns)
    np.testing.assert_array_equal(again.prediction, np.array(held_out.y_pred))


def test_clip_keeps_band_gaps_non_negative(dataset) -> None:
    records, table, split = dataset
    gaps = {r.id: -1.0 + (i % 3) for i, r in enumerate(records)}  # includes negative labels
    held_out = fit_and_evaluate(
        ModelSpec(target="band_gap", params={"n_estimators": 30}, clip_min=0.0),
        list(table.frame.columns),
        training_arrays(table.frame, gaps, split.train_ids),
        candidate_arrays(table.frame, gaps, split.test_ids),
        seed=0,
        importance_repeats=0,
    ).record
    assert min(held_out.y_pred) >= 0.0 and min(held_out.lower) >= 0.0


def test_bad_training_data_is_refused_before_fitting(dataset) -> None:
    records, table, split = dataset
    columns = list(table.frame.columns)
    ids, x, y = training_arrays(
        table.frame, labels_of(records, "heat_of_formation"), split.train_ids
    )
    spec = ModelSpec(target="heat_of_formation")
    empty = ([], x[:0], [])
    with pytest.raises(ModelError, match=r"training labels are NaN or infinite, e.g. \[.cmr:"):
        fit_and_evaluate(spec, columns, (ids, x, np.where(y > 1, np.nan, y)), empty, 0)
    with pytest.raises(ModelError, match="3 training rows with labels; at least 10"):
        fit_and_evaluate(spec, columns, (ids[:3], x[:3], y[:3]), empty, 0)
    with pytest.raises(ModelError, match=r"feature matrix has shape"):
        fit_and_evaluate(spec, columns, (ids, x[:, :5], y), empty, 0)


def test_metrics_are_computed_from_the_record() -> None:
    record = PredictionRecord(
        target="t",
        ids=["a", "b", "c", "d"],
        y_true=[1.0, 2.0, 4.0, None],
        y_pred=[1.5, 2.0, 3.0, 9.0],
        baseline=2.0,
        n_train=10,
    )
    metrics = regression_metrics(record)
    assert metrics["n_test"] == 3 and metrics["n_train"] == 10
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1) / 3))
    assert metrics["dummy_mae"] == pytest.approx((1 + 0 + 2) / 3)
    mean = 7 / 3
    total = (1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2
    assert metrics["r2"] == pytest.approx(1 - 1.25 / total)
