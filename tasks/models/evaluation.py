"""Score a trained model on its held-out rows, next to the baselines on the same split."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from matscreen.tasks.errors import ArtifactError, ModelError
from matscreen.tasks.hashing import code_sha256, content_hash
from matscreen.tasks.models.baselines import dummy_baseline, magpie_rf_baseline, median_baseline
from matscreen.tasks.models.conformal import coverage, coverage_by_width
from matscreen.tasks.models.interpret import permutation_importance
from matscreen.tasks.models.metrics import classification_metrics, regression_metrics
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.records import PredictionRecord, kept_label
from matscreen.tasks.models.serialize import library_of
from matscreen.tasks.models.surrogate import Predictions, SurrogateModel
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec
from matscreen.tasks.versions import installed_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOutScores:
    """The costly part of scoring a model on its held-out rows: the baselines fitted on the
    same training rows, permutation importance, and the calibration curve."""

    baselines: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    calibration: list[dict[str, Any]]


@dataclass(frozen=True)
class Evaluation:
    """Held-out predictions, metrics, baselines and permutation importance of a model;
    ``record`` is the prediction record the metrics were computed from."""

    predictions: Predictions
    y_true: np.ndarray
    metrics: dict[str, Any]
    baselines: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    calibration: list[dict[str, float]] = field(default_factory=list)
    record: PredictionRecord | None = None

    @property
    def scores(self) -> HeldOutScores:
        """The baselines, importance and calibration curve, to keep for a re-scoring."""
        return HeldOutScores(self.baselines, self.importance, self.calibration)


def held_out_metrics(model: SurrogateModel, record: PredictionRecord) -> dict[str, Any]:
    """The model's held-out metrics, computed from its prediction record (the rows with a
    label): record first, then score.

    Regressors: ``mae``, ``rmse``, ``r2``, ``dummy_mae``; classifiers: ``precision``,
    ``recall``, ``f1``, ``accuracy``, ``roc_auc``; both: ``n_train``, ``n_test`` and, with
    intervals, ``level``, ``coverage`` and ``mean_width``; regressors with intervals also
    ``coverage_by_width_quintile`` (rows sorted by interval width and cut in five equal
    parts: ``quintile`` 1 the narrowest, ``mean_width``, ``coverage``, ``n``). With an
    applicability domain: ``share_in_domain`` and, when some rows are outside it,
    ``n_out_of_domain`` and their ``coverage_out_of_domain``.

    A two-stage gap model adds the classifier's scores (``gap_classifier``), the coverage
    on rows with a gap and on the rows it predicts to have one (``coverage_predicted_gap``,
    ``n_predicted_gap``), and the calibration of its hurdle distribution: the mean
    probability of a gap on rows with and without one (``mean_probability_gap_rows``,
    ``mean_probability_metal_rows``) and, on the rows that truly have a gap, the coverage,
    mean width and width quintiles of the conditional gap interval
    (``conditional_coverage``, ``conditional_mean_width``,
    ``conditional_coverage_by_width_quintile``, ``n_with_gap``).
    """
    predicted, y_true = labelled_rows(record)
    if model.is_classifier:
        truth = (
            (y_true <= model.positive_at_most).astype(float)
            if model.positive_at_most is not None
            else y_true
        )
        assert predicted.probability is not None
        metrics: dict[str, Any] = classification_metrics(truth, predicted.probability)
        metrics.update(n_train=record.n_train, n_test=len(truth))
        if predicted.level is not None:
            metrics.update(
                level=predicted.level,
                coverage=coverage(truth, predicted.lower, predicted.upper),
                mean_width=float(np.mean(predicted.upper - predicted.lower)) if len(truth) else 0.0,
            )
    else:
        truth = y_true
        metrics = dict(regression_metrics(record))
        if predicted.level is not None:
            metrics["coverage_by_width_quintile"] = coverage_by_width(
                truth, predicted.lower, predicted.upper
            )
    if predicted.in_domain is not None:
        inside = np.asarray(predicted.in_domain, dtype=bool)
        metrics["share_in_domain"] = float(np.mean(inside)) if len(inside) else math.nan
        if predicted.level is not None and (~inside).any():
            metrics["n_out_of_domain"] = int((~inside).sum())
            metrics["coverage_out_of_domain"] = coverage(
                truth[~inside], predicted.lower[~inside], predicted.upper[~inside]
            )
    if model.kind == "two_stage_gap" and predicted.probability is not None:
        threshold = model.estimator["threshold"]
        has_gap = truth > threshold
        metrics["gap_classifier"] = classification_metrics(
            has_gap.astype(float), predicted.probability
        )
        if predicted.level is not None and has_gap.any():
            metrics["coverage_with_gap"] = coverage(
                truth[has_gap], predicted.lower[has_gap], predicted.upper[has_gap]
            )
        # The rows the model calls semiconductors are calibrated on their own (Mondrian):
        # their coverage is the one the interval level promises.
        called_gap = predicted.probability >= model.estimator["decision"]
        if predicted.level is not None and called_gap.any():
            metrics["n_predicted_gap"] = int(called_gap.sum())
            metrics["coverage_predicted_gap"] = coverage(
                truth[called_gap], predicted.lower[called_gap], predicted.upper[called_gap]
            )
        metrics.update(_hurdle_metrics(predicted, truth, has_gap))
    return metrics


def _hurdle_metrics(
    predicted: Predictions, truth: np.ndarray, has_gap: np.ndarray
) -> dict[str, Any]:
    """Calibration of a two-stage model's hurdle distribution on held-out rows."""
    assert predicted.probability is not None
    probability = predicted.probability
    metrics: dict[str, Any] = {
        "mean_probability_gap_rows": float(np.mean(probability[has_gap]))
        if has_gap.any()
        else math.nan,
        "mean_probability_metal_rows": float(np.mean(probability[~has_gap]))
        if (~has_gap).any()
        else math.nan,
        "n_with_gap": int(has_gap.sum()),
    }
    if predicted.gap_lower is None or predicted.gap_upper is None or not has_gap.any():
        return metrics
    lower, upper = predicted.gap_lower[has_gap], predicted.gap_upper[has_gap]
    metrics.update(
        conditional_coverage=coverage(truth[has_gap], lower, upper),
        conditional_mean_width=float(np.mean(upper - lower)),
        conditional_coverage_by_width_quintile=coverage_by_width(truth[has_gap], lower, upper),
    )
    return metrics


def labelled_rows(record: PredictionRecord) -> tuple[Predictions, np.ndarray]:
    """The rows of a prediction record that have a label (a finite number), as arrays: the
    model's outputs and the labels."""
    known = np.array([t is not None and math.isfinite(t) for t in record.y_true], dtype=bool)

    def kept(values: list[Any] | None) -> np.ndarray | None:
        return None if values is None else np.asarray(values)[known]

    predicted = Predictions(
        ids=[i for i, k in zip(record.ids, known, strict=True) if k],
        prediction=np.asarray(record.y_pred, dtype=np.float64)[known],
        lower=np.asarray(record.lower if record.lower is not None else record.y_pred)[known],
        upper=np.asarray(record.upper if record.upper is not None else record.y_pred)[known],
        probability=kept(record.probability),
        level=record.level,
        gap_pred=kept(record.gap_pred),
        gap_lower=kept(record.gap_lower),
        gap_upper=kept(record.gap_upper),
        metal_value=record.metal_value,
        domain_distance=kept(record.domain_distance),
        in_domain=kept(record.in_domain),
    )
    truth = np.array(record.y_true, dtype=np.float64)[known] if len(known) else np.zeros(0)
    return predicted, truth


def evaluate(
    model: SurrogateModel,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    test: tuple[list[str], np.ndarray, Sequence[float | None]],
    seed: int,
    importance_repeats: int = 5,
    baseline_trees: int = 300,
    n_jobs: int = 1,
    scores: HeldOutScores | None = None,
) -> Evaluation:
    """Predict the held-out rows and score them, the baselines and feature importance.

    Every held-out row is predicted; metrics, baselines and importance use the rows with a
    finite label (a candidate pool may hold structures nobody has computed yet). The
    baselines are fitted on the same training rows (all of them, also for a model
    calibrated by ``interval: split``) and scored on the same held-out rows. ``scores``,
    when given, are the baselines, importance and calibration curve of an earlier call
    with the same arguments (see :func:`scores_key`), taken instead of computing them.
    """
    _, x_train, y_train = train
    test_ids, x_test, y_test = test
    y_all = np.array([np.nan if v is None else v for v in y_test], dtype=np.float64)
    predicted = predict_surrogate(model, test_ids, x_test, labels)
    record = prediction_record(model, predicted, y_all, len(train[0]))
    metrics = held_out_metrics(model, record)
    known = np.isfinite(y_all)
    x_known, y_known = np.asarray(x_test)[known], y_all[known]
    if not known.any():
        return Evaluation(predicted, y_all, metrics, [], [], record=record)
    if scores is not None:
        return Evaluation(
            predicted, y_all, metrics, scores.baselines, scores.importance, scores.calibration,
            record,
        )  # fmt: skip
    kind = "classifier" if model.is_classifier else "regressor"
    y_fit = np.asarray(y_train, dtype=np.float64)
    y_score = y_known
    if model.is_classifier and model.positive_at_most is not None:
        y_fit = (y_fit <= model.positive_at_most).astype(float)
        y_score = (y_score <= model.positive_at_most).astype(float)
    baselines = [dummy_baseline(kind, y_fit, y_score)]
    if kind == "regressor":
        baselines.append(median_baseline(y_fit, y_score))
    forest = magpie_rf_baseline(
        kind, labels, (x_train, y_fit), (x_known, y_score), seed, baseline_trees, n_jobs
    )
    if forest is not None:
        baselines.append(forest)
    importance = (
        permutation_importance(model, x_known, y_known, seed, importance_repeats)
        if importance_repeats
        else []
    )
    curve = calibration_curve(model, x_known, y_known, labels)
    return Evaluation(predicted, y_all, metrics, baselines, importance, curve, record)


def scores_key(
    model_sha256: str,
    labels: Sequence[str],
    train: tuple[Sequence[str], Any, Any],
    test: tuple[Sequence[str], Any, Sequence[float | None]],
    seed: int,
    importance_repeats: int = 5,
    baseline_trees: int = 300,
) -> str | None:
    """The key of :func:`evaluate`'s held-out scores of the stored model whose artifact has
    the sha256 ``model_sha256`` (what was fitted, whatever catalog entity records it): a
    hash of every argument the scores depend on and of the scoring code
    (:func:`scoring_code`). None when that code cannot be identified: the scores are then
    never kept nor taken."""
    code = scoring_code()
    if code is None:
        return None
    _, x_train, y_train = train
    test_ids, x_test, y_test = test
    y_all = np.array([np.nan if v is None else v for v in y_test], dtype=np.float64)
    return content_hash(
        {
            "model": model_sha256,
            "labels": list(labels),
            "train": [content_hash(list(train[0])), _array_sha256(x_train, y_train)],
            "test": [content_hash(list(test_ids)), _array_sha256(x_test, y_all)],
            "seed": seed,
            "importance_repeats": importance_repeats,
            "baseline_trees": baseline_trees,
            "code": code,
        }
    )


#: Libraries whose versions the scores depend on, besides matscreen's own code.
SCORING_LIBRARIES = ("numpy", "scipy", "scikit-learn", "xgboost", "pandas")


@lru_cache(maxsize=1)
def scoring_code() -> str | None:
    """A hash of the code that scores a model: the source of every module of this package
    (:mod:`matscreen.tasks.models`) and the versions of :data:`SCORING_LIBRARIES`; None if
    a module's source cannot be read (an install without sources)."""
    code = code_sha256(Path(__file__).parent)
    if code is None:
        return None
    versions = [f"{library} {installed_version(library)}" for library in SCORING_LIBRARIES]
    return content_hash([code, versions])


def _array_sha256(*arrays: Any) -> str:
    """The sha256 of the arrays' values as float64, one after the other (their shapes are
    named by the row ids and feature labels hashed beside them)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()


#: Nominal coverage levels at which the held-out coverage of the intervals is measured.
CALIBRATION_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def calibration_curve(
    model: SurrogateModel,
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    levels: Sequence[float] = CALIBRATION_LEVELS,
) -> list[dict[str, float]]:
    """Held-out coverage of the model's intervals at several nominal levels.

    A calibrated model's points lie on the diagonal (coverage equal to the level). Empty
    for classifiers and for models trained without intervals.

    Returns
    -------
    list of dict
        ``level``, ``coverage`` and ``mean_width`` per level.
    """
    if model.is_classifier or model.calibration is None or not len(y):
        return []
    ids = [str(i) for i in range(len(y))]
    rows = []
    for level in levels:
        predicted = predict_surrogate(model, ids, x, labels, level)
        rows.append(
            {
                "level": float(level),
                "coverage": coverage(y, predicted.lower, predicted.upper),
                "mean_width": float(np.mean(predicted.upper - predicted.lower)),
            }
        )
    return rows


def _listed(values: np.ndarray | None) -> list[Any] | None:
    return None if values is None else values.tolist()


@dataclass(frozen=True)
class FittedSurrogate:
    """A surrogate trained on the training rows, with its held-out predictions and scores."""

    model: SurrogateModel
    record: PredictionRecord
    evaluation: Evaluation


def fit_and_evaluate(
    spec: ModelSpec,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    test: tuple[list[str], np.ndarray, Sequence[float | None]],
    seed: int,
    groups: Sequence[str] | None = None,
    featurization: dict[str, Any] | None = None,
    dask_address: str | None = None,
    importance_repeats: int = 5,
) -> FittedSurrogate:
    """Train a surrogate on the training rows, then predict and score the held-out rows.

    The one training step of both the campaign and ``matscreen train``: the held-out rows
    reach :func:`evaluate` only after :func:`train_surrogate` has returned.

    Parameters
    ----------
    spec, labels, train, seed, groups, featurization, dask_address
        As for :func:`train_surrogate`.
    test
        ``(ids, features, labels)`` of the held-out rows; a label may be None or NaN.
    importance_repeats
        Shuffles per feature for permutation importance (0 skips it).
    """
    model = train_surrogate(spec, labels, train, seed, groups, featurization, dask_address)
    return evaluate_fitted(model, labels, train, test, seed, importance_repeats)


def evaluate_fitted(
    model: SurrogateModel,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    test: tuple[list[str], np.ndarray, Sequence[float | None]],
    seed: int,
    importance_repeats: int = 5,
    scores: HeldOutScores | None = None,
) -> FittedSurrogate:
    """Predict and score the held-out rows with a model trained before on ``train``
    (``scores``: as for :func:`evaluate`)."""
    evaluation = evaluate(model, labels, train, test, seed, importance_repeats, scores=scores)
    return FittedSurrogate(model, held_out_record(model, evaluation, len(train[0])), evaluation)


def held_out_record(
    model: SurrogateModel, evaluation: Evaluation, n_train: int
) -> PredictionRecord:
    """The prediction record of an evaluation: every held-out row's outputs and label."""
    if evaluation.record is not None:
        return evaluation.record
    return prediction_record(model, evaluation.predictions, evaluation.y_true, n_train)


def prediction_record(
    model: SurrogateModel,
    predicted: Predictions,
    y_true: Sequence[float | None] | np.ndarray,
    n_train: int,
) -> PredictionRecord:
    """A model's predictions for a set of rows as plain data, with the labels where known
    (None or NaN where not)."""
    labels = [kept_label(v) for v in y_true]
    return PredictionRecord(
        target=model.target,
        ids=list(predicted.ids),
        y_true=labels,
        y_pred=predicted.prediction.tolist(),
        baseline=model.train_label_mean,
        n_train=n_train,
        lower=predicted.lower.tolist(),
        upper=predicted.upper.tolist(),
        probability=_listed(predicted.probability),
        level=predicted.level,
        gap_pred=_listed(predicted.gap_pred),
        gap_lower=_listed(predicted.gap_lower),
        gap_upper=_listed(predicted.gap_upper),
        metal_value=predicted.metal_value,
        domain_distance=_listed(predicted.domain_distance),
        in_domain=_listed(predicted.in_domain),
    )


def training_fingerprint(
    spec: ModelSpec,
    labels: Sequence[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    seed: int,
    groups: Sequence[str] | None = None,
    featurization: dict[str, Any] | None = None,
) -> str:
    """A hash of everything a fit depends on: equal hashes give the same fitted model.

    It covers the model's spec and seed, the feature labels and the featurization, the
    training rows (ids, feature values and labels) and their groups, and the versions of
    matscreen and of the libraries that fit the model. A campaign re-run whose training set
    has this hash reuses the model fitted before instead of fitting it again.
    """
    ids, x, y = train
    # xgboost fits the difficulty models of adaptive intervals, whatever the algorithm.
    libraries = dict.fromkeys(
        (library_of(spec.algorithm), "numpy", "scikit-learn", "matscreen", "xgboost")
    )
    return content_hash(
        {
            "model": spec.model_dump(mode="json"),
            "seed": seed,
            "labels": list(labels),
            "featurization": featurization,
            "ids": list(ids),
            "groups": None if groups is None else list(groups),
            "values_sha256": _array_sha256(x, y),
            "versions": {name: installed_version(name) for name in libraries},
        }
    )


def reusable_model(
    stored: Sequence[tuple[str, str]], read: Callable[[str], bytes]
) -> tuple[str, str, SurrogateModel] | None:
    """The first stored model that still loads, of ``(model id, artifact sha256)`` pairs:
    its id, artifact sha256 and model.

    ``read`` returns an artifact's bytes by sha256 (verified). A model whose artifact is
    missing, damaged or of a format this matscreen no longer reads is skipped with a warning
    (the caller fits again).
    """
    for model_id, sha256 in stored:
        try:
            return model_id, sha256, SurrogateModel.from_json(read(sha256), f"model {model_id}")
        except (ArtifactError, ModelError) as exc:
            log.warning("model %s is not reused, it is fitted again: %s", model_id, exc)
    return None
