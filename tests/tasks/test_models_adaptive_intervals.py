"""Adaptive (normalized) conformal intervals, the two-stage hurdle distribution and the
applicability domain, on data whose noise scale and domain are known."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.conformal import coverage
from matscreen.tasks.models.domain import fit_domain
from matscreen.tasks.models.evaluation import calibration_curve, evaluate, fit_and_evaluate
from matscreen.tasks.models.folds import make_folds
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.records import PredictionRecord
from matscreen.tasks.models.surrogate import MODEL_FORMAT_VERSION, SurrogateModel
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.rank import add_intervals, candidate_frame
from matscreen.tasks.rank.methods import rank_with
from matscreen.tasks.rank.probability import hurdle_columns, success_probability
from matscreen.tasks.spec import CriterionSpec, ModelSpec, RankingSpec

LABELS = ["a", "b", "c"]
PARAMS = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}


def _heteroscedastic(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """y = sin(2 x1) + N(0, s(x)), s from 0.05 to 0.65 along x0: the true scale is known."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    scale = 0.05 + 0.15 * (x[:, 0] + 2)
    y = np.sin(2 * x[:, 1]) + rng.normal(size=n) * scale
    return [f"h{seed}-{i}" for i in range(n)], x, y, scale


@pytest.fixture(scope="module")
def heteroscedastic_models() -> dict[str, SurrogateModel]:
    ids, x, y, _ = _heteroscedastic(2500, seed=1)
    return {
        width: train_surrogate(
            ModelSpec(target="y", params=PARAMS, interval_width=width), LABELS, (ids, x, y), 0
        )
        for width in ("adaptive", "constant")
    }


def test_adaptive_widths_follow_the_true_noise_and_cover_in_every_quintile(
    heteroscedastic_models,
) -> None:
    test_ids, x_test, y_test, scale = _heteroscedastic(5000, seed=2)
    adaptive = heteroscedastic_models["adaptive"]
    assert adaptive.calibration["width"] == "adaptive" and adaptive.difficulty is not None
    predicted = predict_surrogate(adaptive, test_ids, x_test, LABELS)
    width = predicted.upper - predicted.lower
    assert np.corrcoef(width, scale)[0, 1] > 0.85
    assert 0.87 <= coverage(y_test, predicted.lower, predicted.upper) <= 0.93

    result = evaluate(
        adaptive,
        LABELS,
        (test_ids[:10], x_test[:10], y_test[:10]),
        (test_ids, x_test, y_test),
        seed=0,
        importance_repeats=0,
        baseline_trees=10,
    )
    quintiles = result.metrics["coverage_by_width_quintile"]
    assert [q["quintile"] for q in quintiles] == [1, 2, 3, 4, 5]
    assert [q["n"] for q in quintiles] == [1000] * 5
    assert all(0.85 <= q["coverage"] <= 0.95 for q in quintiles)
    # The narrowest fifth sits where the noise is smallest, the widest where it is largest.
    assert quintiles[4]["mean_width"] > 3 * quintiles[0]["mean_width"]

    constant = heteroscedastic_models["constant"]
    assert constant.calibration["width"] == "constant" and constant.difficulty is None
    flat = predict_surrogate(constant, test_ids, x_test, LABELS)
    assert np.ptp(flat.upper - flat.lower) < 1e-12  # one width for every row
    # One width over-covers the quiet rows and under-covers the noisy ones; adaptive
    # widths cover both near the level and are narrower on average.
    # (On the quiet rows the residual is partly the fit's own error, not only the noise,
    # so they stay a little over-covered: about 0.96 against 1.0 for one width.)
    noisy = scale > np.quantile(scale, 0.8)
    quiet = scale < np.quantile(scale, 0.2)
    assert coverage(y_test[noisy], flat.lower[noisy], flat.upper[noisy]) < 0.75
    assert coverage(y_test[noisy], predicted.lower[noisy], predicted.upper[noisy]) > 0.83
    assert coverage(y_test[quiet], flat.lower[quiet], flat.upper[quiet]) > 0.99
    assert coverage(y_test[quiet], predicted.lower[quiet], predicted.upper[quiet]) < 0.98
    assert np.mean(width) < 0.95 * np.mean(flat.upper - flat.lower)


def test_every_level_scales_the_same_adaptive_widths(heteroscedastic_models) -> None:
    test_ids, x_test, y_test, _ = _heteroscedastic(3000, seed=3)
    model = heteroscedastic_models["adaptive"]
    ninety = predict_surrogate(model, test_ids, x_test, LABELS, level=0.9)
    half = predict_surrogate(model, test_ids, x_test, LABELS, level=0.5)
    # Each row's width is the level's quantile of the scores times the row's difficulty.
    ratio = (half.upper - half.lower) / (ninety.upper - ninety.lower)
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    assert 0.3 < ratio[0] < 0.5  # about 0.674 / 1.645 for Gaussian noise
    curve = calibration_curve(model, x_test, y_test, LABELS)
    assert [row["level"] for row in curve] == [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    for row in curve:
        assert abs(row["coverage"] - row["level"]) < 0.04
    widths = [row["mean_width"] for row in curve]
    assert widths == sorted(widths)


def _hurdle_data(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Metals (0) where x0 < 0; else a gap 1 + 2 x1 with noise growing along x2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 3))
    noise = rng.normal(size=n) * (0.05 + 0.3 * (x[:, 2] + 1))
    y = np.where(x[:, 0] < 0, 0.0, np.maximum(1.5 + x[:, 1] + noise, 0.05))
    return [f"g{seed}-{i}" for i in range(n)], x, y


GAP_SPEC = ModelSpec(
    target="band_gap", kind="two_stage_gap", params=PARAMS, clip_min=0.0, cv_folds=4
)


def test_two_stage_conditional_interval_covers_the_rows_with_a_gap() -> None:
    train = _hurdle_data(1600, seed=4)
    test_ids, x_test, y_test = _hurdle_data(2000, seed=5)
    fitted = fit_and_evaluate(
        GAP_SPEC, LABELS, train, (test_ids, x_test, list(y_test)), 0, None, importance_repeats=0
    )
    model, record, metrics = fitted.model, fitted.record, fitted.evaluation.metrics
    assert model.conditional is not None
    assert model.conditional["calibration"]["width"] == "adaptive"
    has_gap = y_test > 0
    assert metrics["n_with_gap"] == int(has_gap.sum())
    assert 0.86 <= metrics["conditional_coverage"] <= 0.94
    lower, upper = np.array(record.gap_lower), np.array(record.gap_upper)
    inside = (y_test >= lower) & (y_test <= upper)
    assert metrics["conditional_coverage"] == pytest.approx(inside[has_gap].mean())
    assert metrics["conditional_mean_width"] == pytest.approx(np.mean((upper - lower)[has_gap]))
    # The conditional widths follow the noise, which grows along x2.
    assert np.corrcoef((upper - lower)[has_gap], x_test[has_gap, 2])[0, 1] > 0.7
    assert metrics["mean_probability_gap_rows"] > 0.9 > 0.1 > metrics["mean_probability_metal_rows"]
    # The record keeps the displayed combined prediction and interval.
    assert record.y_pred == fitted.evaluation.predictions.prediction.tolist()
    assert record.metal_value == 0.0 and len(record.gap_pred) == len(test_ids)
    assert len(metrics["conditional_coverage_by_width_quintile"]) == 5
    assert "coverage_predicted_gap" in metrics and "coverage_with_gap" in metrics


def _split_gaussian_sample(
    rng: np.random.Generator, pred: float, lower: float, upper: float, level: float, n: int
) -> np.ndarray:
    from scipy.special import ndtri

    z = float(ndtri((1 + level) / 2))
    draw = rng.normal(size=n)
    return pred + np.where(draw < 0, draw * (pred - lower) / z, draw * (upper - pred) / z)


def test_hurdle_probability_agrees_with_monte_carlo() -> None:
    rows = [  # (p, conditional prediction, lower, upper): symmetric, clipped at 0, wide
        (0.8, 2.0, 1.5, 2.5),
        (0.3, 0.4, 0.0, 1.1),
        (0.95, 1.3, 0.2, 2.4),
        (0.0, 2.0, 1.9, 2.1),
        (1.0, 3.0, 2.5, 3.5),
    ]
    names = hurdle_columns("band_gap")
    frame = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(len(rows))],
            "pred_band_gap": [0.0] * len(rows),
            names["probability"]: [r[0] for r in rows],
            names["pred"]: [r[1] for r in rows],
            names["lower"]: [r[2] for r in rows],
            names["upper"]: [r[3] for r in rows],
            names["metal_value"]: 0.0,
        }
    )
    rng = np.random.default_rng(7)
    n = 400_000
    for low, high in ((1.4, 3.1), (None, 0.5)):
        criteria = [CriterionSpec(property="band_gap", min=low, max=high, unit="eV")]
        exact = success_probability(frame, criteria, 0.9)["p_band_gap"].to_numpy()
        for (p, pred, lower, upper), computed in zip(rows, exact, strict=True):
            has_gap = rng.random(n) < p
            value = np.where(has_gap, _split_gaussian_sample(rng, pred, lower, upper, 0.9, n), 0)
            inside = (value <= high) & (value >= (-np.inf if low is None else low))
            estimate = inside.mean()
            assert computed == pytest.approx(estimate, abs=4 * np.sqrt(0.25 / n) + 1e-12)
    # A certain metal meets a range holding 0 with probability 1, a range above it never.
    assert exact[3] == pytest.approx(1.0)


def test_campaign_columns_from_records_rank_by_the_hurdle() -> None:
    ids = ["a", "b", "c"]
    gap = PredictionRecord(
        target="band_gap",
        ids=ids,
        y_true=[None] * 3,
        y_pred=[2.0, 0.0, 2.0],
        baseline=0.1,
        n_train=100,
        lower=[1.0, 0.0, 1.0],
        upper=[3.0, 1.0, 3.0],
        probability=[0.9, 0.2, 0.6],
        level=0.9,
        gap_pred=[2.0, 2.1, 2.0],
        gap_lower=[1.8, 1.9, 1.0],
        gap_upper=[2.2, 2.3, 3.0],
        metal_value=0.0,
        domain_distance=[1.0, 2.0, 9.0],
        in_domain=[True, True, False],
    )
    heat = PredictionRecord(
        target="heat_of_formation",
        ids=ids[::-1],
        y_true=[None] * 3,
        y_pred=[0.0, 0.0, 0.0],
        baseline=0.0,
        n_train=100,
        lower=[-0.1] * 3,
        upper=[0.1] * 3,
        level=0.9,
        domain_distance=[1.0, 5.0, 1.0],
        in_domain=[True, False, True],
    )
    candidates = candidate_frame(
        ids, ["A", "B", "C"], {"band_gap": gap.y_pred, "heat_of_formation": [0.0] * 3}
    )
    levels = add_intervals(candidates, {"band_gap": gap, "heat_of_formation": heat})
    assert levels == {"band_gap": 0.9, "heat_of_formation": 0.9}
    assert candidates["prob_nonzero_band_gap"].tolist() == [0.9, 0.2, 0.6]
    assert candidates["cond_upper_band_gap"].tolist() == [2.2, 2.3, 3.0]
    assert candidates["metal_value_band_gap"].tolist() == [0.0] * 3
    assert candidates["domain_distance_heat_of_formation"].tolist() == [1.0, 5.0, 1.0]
    # b is outside the heat model's domain, c outside the gap model's.
    assert candidates["in_domain"].tolist() == [True, False, False]
    criteria = [
        CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV"),
        CriterionSpec(property="heat_of_formation", max=0.21, unit="eV"),
    ]
    ranked = rank_with(candidates, criteria, RankingSpec(), levels)
    p = dict(zip(ranked["id"], ranked["p_band_gap"], strict=True))
    # The narrow conditional interval lies inside the range: P = p(gap).
    assert p["a"] == pytest.approx(0.9, abs=1e-6)
    assert p["b"] == pytest.approx(0.2, abs=1e-6)
    assert list(ranked["id"]) == ["a", "c", "b"]


def test_saved_model_keeps_its_difficulty_and_domain_parts(tmp_path) -> None:
    pytest.importorskip("skops", reason="scikit-learn models are stored with skops")
    ids, x, y = _hurdle_data(600, seed=8)
    test_ids, x_test, _ = _hurdle_data(300, seed=9)
    x_test[:5] += 30.0  # far from every training row
    for algorithm, params in (
        ("xgboost", {"n_estimators": 40}),
        ("random_forest", {"n_estimators": 30}),
    ):
        spec = ModelSpec(
            target="gap", kind="two_stage_gap", algorithm=algorithm, params=params, clip_min=0.0
        )
        model = train_surrogate(spec, LABELS, (ids, x, y), seed=0)
        before = predict_surrogate(model, test_ids, x_test, LABELS)
        path = tmp_path / f"{algorithm}.json"
        path.write_bytes(model.model_json)
        document = json.loads(path.read_bytes())
        assert document["format_version"] == MODEL_FORMAT_VERSION == 2
        # The difficulty model of the conditional gap interval is xgboost's own JSON,
        # whatever the algorithm; the displayed interval keeps one width per category.
        assert document["difficulty"] is None
        assert document["calibration"]["width"] == "constant"
        difficulty = document["conditional"]["difficulty"]
        assert difficulty["estimator"]["model"]["type"] == "xgboost"
        assert difficulty["selection"]["rounds"] > 0 and difficulty["floor"] > 0
        assert document["domain"]["threshold"] > 0
        loaded = SurrogateModel.from_json(path.read_bytes(), str(path))
        after = predict_surrogate(loaded, test_ids, x_test, LABELS)
        for name in (
            "prediction",
            "lower",
            "upper",
            "gap_pred",
            "gap_lower",
            "gap_upper",
            "domain_distance",
            "in_domain",
        ):
            np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
        assert not after.in_domain[:5].any() and after.in_domain[5:].mean() > 0.95
        # A document of the earlier layout is refused, with what to do.
        older = json.dumps({**document, "format_version": 1})
        with pytest.raises(ModelError, match="model format version 1, .* version 2; refit"):
            SurrogateModel.from_json(older, "old.json")
        # The difficulty models need the xgboost they were fitted with, also for a forest.
        other = {**document["versions"], "xgboost": "1.7.6"}
        with pytest.raises(ModelError, match=r"fitted with xgboost 1\.7\.6"):
            SurrogateModel.from_json(json.dumps({**document, "versions": other}), "m.json")


def test_a_stored_model_of_an_older_format_is_not_reused() -> None:
    from matscreen.tasks.errors import ArtifactError
    from matscreen.tasks.models.evaluation import reusable_model

    ids, x, y, _ = _heteroscedastic(200, seed=10)
    model = train_surrogate(
        ModelSpec(target="y", params={"n_estimators": 10}), LABELS, (ids, x, y), 0
    )
    old = json.dumps({**model.to_document(), "format_version": 1}).encode()
    artifacts = {"old": old, "new": model.model_json}

    def read(sha256: str) -> bytes:
        if sha256 not in artifacts:
            raise ArtifactError(f"artifact {sha256} is missing")
        return artifacts[sha256]

    # The old artifact does not load, so no stored model is found and the campaign fits.
    assert reusable_model([("model-1", "old")], read) is None
    # A missing or unloadable artifact is passed over for the next stored model.
    found = reusable_model([("model-0", "gone"), ("model-1", "old"), ("model-2", "new")], read)
    assert found is not None and found[:2] == ("model-2", "new")
    assert found[2].model_json == model.model_json


def test_domain_flags_far_rows_and_measures_blocks_alike(monkeypatch) -> None:
    rng = np.random.default_rng(11)
    x = rng.normal(size=(1500, 8))
    x[rng.random(x.shape) < 0.02] = np.nan
    folds = make_folds(len(x), 5, seed=0)
    domain = fit_domain(x, folds)
    near = rng.normal(size=(4000, 8))
    far = rng.normal(size=(200, 8)) + 6.0
    near_distance = domain.distance(near)
    # Rows like the training rows fall beyond the threshold about 1 % of the time.
    assert np.mean(near_distance > domain.threshold) < 0.03
    assert np.all(domain.distance(far) > domain.threshold)
    from matscreen.tasks.models import domain as domain_module

    monkeypatch.setattr(domain_module, "_BLOCK", 7)
    np.testing.assert_allclose(domain.distance(near[:100]), near_distance[:100], rtol=1e-12)


def test_normalized_scores_keep_their_mondrian_categories() -> None:
    from matscreen.tasks.models.conformal import calibrate, intervals

    # Category a: residuals 1..19 on difficulty 1; category b: residuals 2..38 on
    # difficulty 2, i.e. normalized scores 1..19 in both.
    residual = np.r_[np.arange(1.0, 20.0), 2 * np.arange(1.0, 20.0)]
    difficulty = np.r_[np.ones(19), np.full(19, 2.0)]
    categories = np.array(["a"] * 19 + ["b"] * 19)
    calibration = calibrate(residual, np.zeros(38), "cv", 0.9, categories, difficulty)
    assert calibration.width == "adaptive"
    assert calibration.scores["b"] == pytest.approx(list(np.arange(1.0, 20.0)))
    # Rank ceil(20 * 0.9) = 18 of each category's 19 scores: 18, times the row's difficulty.
    lower, upper = intervals(
        calibration, np.zeros(3), 0.9, np.array(["a", "b", "b"]), np.array([1.0, 2.0, 0.5])
    )
    np.testing.assert_allclose(upper, [18.0, 36.0, 9.0])
    np.testing.assert_allclose(lower, -upper)
    with pytest.raises(ModelError, match="one difficulty per predicted row"):
        intervals(calibration, np.zeros(3), 0.9, np.array(["a", "b", "b"]))
    with pytest.raises(ModelError, match="must be positive"):
        calibrate(residual, np.zeros(38), "cv", 0.9, None, difficulty - 1.0)
