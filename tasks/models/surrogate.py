"""Train and apply surrogate models: folds, search, conformal calibration, final fit.

The protocol, on the training part only (the held-out part is chosen before and never
passed here):

1. the labels are checked (finite numbers; enough rows, classes and groups for the folds);
2. K folds are drawn — by group when the split is grouped, stratified by class (or metal /
   non-metal for the two-stage gap model) otherwise — and reused by every later step;
3. an optional hyperparameter search (randomized or successive halving) scores candidates
   by cross-validation over those folds, on a Dask cluster when one is given;
4. with the chosen parameters, each fold's model predicts the rows it did not see: the
   out-of-fold predictions give the cross-validated metrics and the conformal calibration
   scores (or, for ``interval: split``, a calibration part is held back instead);
5. with ``interval_width: adaptive``, a difficulty model of the absolute residuals is
   cross-fitted over the same folds (over folds of the calibration part for ``split``) and
   the scores are normalized by it (:mod:`~matscreen.tasks.models.difficulty`); the
   two-stage gap model also calibrates its regressor on the rows that truly have a gap
   (the conditional interval of its hurdle distribution);
6. the final model is fitted on every training row, and the applicability domain of the
   training rows is measured (:mod:`~matscreen.tasks.models.domain`).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    StratifiedGroupKFold,
    StratifiedKFold,
)

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.conformal import Calibration, calibrate, conformal_quantile, intervals
from matscreen.tasks.models.difficulty import (
    MIN_DIFFICULTY_ROWS,
    cross_fit_difficulty,
    difficulty_from_dict,
    difficulty_to_dict,
    floor_of,
    predict_difficulty,
)
from matscreen.tasks.models.domain import Domain, fit_domain
from matscreen.tasks.models.metrics import classification_metrics, error_metrics, json_safe
from matscreen.tasks.models.pipeline import (
    DEFAULT_PARAMS,
    DEFAULT_SEARCH_SPACES,
    TwoStageGapRegressor,
    build_pipeline,
    param_names,
)
from matscreen.tasks.models.records import MIN_TRAINING_ROWS
from matscreen.tasks.models.serialize import (
    estimator_from_dict,
    estimator_to_dict,
    library_of,
)
from matscreen.tasks.spec import ModelSpec
from matscreen.tasks.versions import installed_version

#: Identifies a stored surrogate model and the layout of its document.
MODEL_FORMAT = "matscreen-surrogate"
#: Version 2 added the difficulty models, the conditional calibration of two-stage models
#: and the applicability domain.
MODEL_FORMAT_VERSION = 2

#: Share of the training rows held back for calibration with ``interval: split``.
SPLIT_CALIBRATION_FRACTION = 0.2

#: Rows predicted per block when computing intervals, to bound memory on large inputs.
_BLOCK = 20000


@dataclass(frozen=True)
class SurrogateModel:
    """A trained surrogate as plain data: the fitted estimator's document plus metadata.

    Attributes
    ----------
    target, kind, algorithm
        What is predicted and how (see :class:`ModelSpec`).
    params
        The parameters of the final fit (the spec's, updated by the search's best).
    feature_labels
        Column labels, in order, of the feature matrix the model reads.
    train_ids, train_label_mean
        The training rows and the mean of their labels (the dummy baseline).
    clip_min
        Lower bound applied to predictions and intervals (0 for band gaps).
    positive_at_most
        For a classifier of a continuous label: class 1 means label <= this.
    calibration
        Conformal calibration scores (:class:`Calibration` as a dict), or None.
    cv_metrics
        Cross-validated metrics of the out-of-fold predictions on the training part.
    search
        The hyperparameter search: method, candidates, best parameters and score.
    versions
        Versions of the packages the model was fitted with.
    estimator
        The fitted estimator (:func:`estimator_to_dict`).
    featurization
        The featurization description the features came from, when known.
    difficulty
        The difficulty model of ``adaptive`` intervals: its estimator document, floor and
        ``selection`` (boosting rounds chosen by cross-fitting, and the out-of-fold errors
        of each choice; a selection without an estimator means a constant difficulty won
        and the widths are constant). None for ``interval_width: constant``.
    conditional
        Two-stage gap models: the calibration (and difficulty model) of the regressor on
        the training rows that truly have a gap, sizing the interval of the gap given
        that there is one; else None.
    domain
        The applicability domain of the training rows (:class:`Domain` as a dict).
    """

    target: str
    kind: str
    algorithm: str
    params: dict[str, Any]
    feature_labels: list[str]
    train_ids: list[str]
    train_label_mean: float
    clip_min: float | None
    positive_at_most: float | None
    calibration: dict[str, Any] | None
    cv_metrics: dict[str, Any]
    search: dict[str, Any] | None
    versions: dict[str, str]
    estimator: dict[str, Any] = field(repr=False)
    featurization: dict[str, Any] | None = None
    difficulty: dict[str, Any] | None = field(default=None, repr=False)
    conditional: dict[str, Any] | None = field(default=None, repr=False)
    domain: dict[str, Any] | None = field(default=None, repr=False)

    def to_document(self) -> dict[str, Any]:
        """The whole model as one JSON-able document.

        The fields are taken as they are (plain dicts and lists, no nested dataclass), so
        the document shares the model's objects: serialize it, do not change it.
        (``asdict``'s deep copy of the estimator's trees took seconds per model.)
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, **values}

    @property
    def model_json(self) -> bytes:
        """The model document as UTF-8 JSON bytes (what the artifact store keeps)."""
        return json.dumps(self.to_document(), allow_nan=False, sort_keys=True).encode()

    @property
    def artifact_format(self) -> str:
        """How :attr:`model_json` is laid out (for the catalog's model entity)."""
        return f"{MODEL_FORMAT}-json-v{MODEL_FORMAT_VERSION}"

    @property
    def is_classifier(self) -> bool:
        """Whether the model predicts a class (0/1) with a probability."""
        return self.kind == "classifier"

    @classmethod
    def from_json(cls, data: bytes | str, where: str = "model") -> SurrogateModel:
        """Read a model document, refusing another format or library version.

        Raises
        ------
        ModelError
            If the document is not a matscreen model of this format version (an older
            one must be refitted), or was fitted with a different major.minor version of
            its estimator library than the one installed; the message names ``where``.
        """
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ModelError(f"{where}: not a JSON document ({exc})") from exc
        if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
            raise ModelError(f"{where}: not a matscreen model (no format {MODEL_FORMAT!r})")
        if document.get("format_version") != MODEL_FORMAT_VERSION:
            raise ModelError(
                f"{where}: model format version {document.get('format_version')}, this "
                f"matscreen reads version {MODEL_FORMAT_VERSION}; refit the model"
            )
        check_versions(document["algorithm"], document["versions"], where)
        parts = [document.get("difficulty"), (document.get("conditional") or {}).get("difficulty")]
        if any(part and "estimator" in part for part in parts):
            check_versions("xgboost", document["versions"], where)  # the difficulty models
        names = {f.name for f in cls.__dataclass_fields__.values()}
        return cls(**{k: v for k, v in document.items() if k in names})

    def fitted(self) -> BaseEstimator:
        """The fitted estimator, rebuilt once from its document and then kept."""
        cached = self.__dict__.get("_fitted")
        if cached is None:
            cached = estimator_from_dict(self.estimator)
            object.__setattr__(self, "_fitted", cached)
        return cached

    def difficulty_model(self) -> tuple[BaseEstimator, float] | None:
        """(difficulty estimator, floor) of ``adaptive`` intervals, or None."""
        return self._cached("_difficulty", self.difficulty)

    def conditional_difficulty_model(self) -> tuple[BaseEstimator, float] | None:
        """(difficulty estimator, floor) of a two-stage model's conditional interval."""
        state = None if self.conditional is None else self.conditional.get("difficulty")
        return self._cached("_conditional_difficulty", state)

    def applicability_domain(self) -> Domain | None:
        """The applicability domain of the training rows, or None for a model without."""
        cached = self.__dict__.get("_domain")
        if cached is None and self.domain is not None:
            cached = Domain.from_dict(self.domain)
            object.__setattr__(self, "_domain", cached)
        return cached

    def _cached(
        self, name: str, state: dict[str, Any] | None
    ) -> tuple[BaseEstimator, float] | None:
        cached = self.__dict__.get(name)
        # A difficulty part without an estimator records that a constant won the choice.
        if cached is None and state is not None and "estimator" in state:
            cached = difficulty_from_dict(state)
            object.__setattr__(self, name, cached)
        return cached


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_versions(algorithm: str, versions: dict[str, str], where: str) -> None:
    """Refuse a model whose estimator library differs (major.minor) from the installed one.

    Raises
    ------
    ModelError
        Naming the library, both versions and ``where``.
    """
    library = library_of(algorithm)
    saved, installed = versions.get(library, "unknown"), installed_version(library)
    if _minor(saved) != _minor(installed):
        raise ModelError(
            f"{where}: fitted with {library} {saved}, but {library} {installed} is installed; "
            f"refit the model or install {library} {'.'.join(_minor(saved))}"
        )


@dataclass(frozen=True)
class Predictions:
    """Predictions of a surrogate for a set of rows.

    ``lower``/``upper`` bound the conformal interval at ``level`` (for a classifier: the
    smallest and largest class of the conformal prediction set); ``probability`` is the
    probability of class 1 (classifier) or of a gap (two-stage gap model), else None.

    A two-stage gap model also gives the hurdle distribution's parts: ``gap_pred`` (the
    regressor's gap, whatever the classifier says), ``gap_lower``/``gap_upper`` (its
    conformal interval at ``level``, calibrated on training rows that truly have a gap)
    and ``metal_value`` (the value of a row without a gap). ``domain_distance`` is each
    row's distance to the training rows, ``in_domain`` whether it is within the domain's
    threshold (None for models stored without a domain).
    """

    ids: list[str]
    prediction: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    probability: np.ndarray | None
    level: float | None
    gap_pred: np.ndarray | None = None
    gap_lower: np.ndarray | None = None
    gap_upper: np.ndarray | None = None
    metal_value: float | None = None
    domain_distance: np.ndarray | None = None
    in_domain: np.ndarray | None = None


# -- checks and folds --------------------------------------------------------------------------


def _classes(spec: ModelSpec, ids: Sequence[str], y: np.ndarray) -> np.ndarray:
    """0/1 classes of a classifier's labels (label <= ``positive_at_most``, or the labels)."""
    if spec.positive_at_most is not None:
        return (y <= spec.positive_at_most).astype(int)
    bad = [ids[i] for i in np.flatnonzero((y != 0) & (y != 1))]
    if bad:
        raise ModelError(
            f"{spec.target}: a classifier needs labels 0 or 1 (or positive_at_most); "
            f"{len(bad)} rows hold other values, e.g. {bad[:5]}"
        )
    return y.astype(int)


def check_training_data(
    spec: ModelSpec,
    ids: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str] | None = None,
) -> None:
    """Refuse training data that cannot give an honest fit, before anything is fitted.

    Raises
    ------
    ModelError
        If the matrix is misshapen; a label is missing, not a number or infinite (naming
        rows); there are fewer rows (or groups) than the folds need; or a class (metal /
        non-metal for the two-stage model) has fewer rows than folds.
    """
    target, folds = spec.target, spec.cv_folds
    if x.ndim != 2 or x.shape[1] != len(labels):
        raise ModelError(
            f"{target}: feature matrix has shape {x.shape}, expected (n, {len(labels)})"
        )
    if len(y) != x.shape[0] or len(ids) != len(y):
        raise ModelError(f"{target}: {len(y)} labels for {x.shape[0]} rows and {len(ids)} ids")
    try:
        values = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        bad = [i for i, v in zip(ids, y, strict=True) if not _is_number(v)]
        raise ModelError(f"{target}: labels are not numbers, e.g. {bad[:5]}") from exc
    bad = [ids[i] for i in np.flatnonzero(~np.isfinite(values))]
    if bad:
        raise ModelError(
            f"{target}: {len(bad)} training labels are NaN or infinite, e.g. {bad[:5]}"
        )
    needed = max(MIN_TRAINING_ROWS, 2 * folds)
    if spec.interval == "split":
        needed = max(needed, math.ceil(2 * folds / (1 - SPLIT_CALIBRATION_FRACTION)))
    if len(values) < needed:
        raise ModelError(
            f"{target}: {len(values)} training rows with labels; at least {needed} needed for "
            f"{folds}-fold cross-validation"
        )
    if groups is not None and len(set(groups)) < folds:
        raise ModelError(
            f"{target}: {len(set(groups))} groups in the training rows; {folds}-fold grouped "
            "cross-validation needs at least as many groups as folds"
        )
    strata = _strata(spec, ids, values)
    if strata is not None:
        names = ("negative", "positive") if spec.kind == "classifier" else ("metal", "gap")
        counts = {names[c]: int(np.sum(strata == c)) for c in (0, 1)}
        if min(counts.values()) < folds:
            raise ModelError(
                f"{target}: {counts} training rows by class; {folds}-fold cross-validation "
                f"needs at least {folds} of each"
            )


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _strata(spec: ModelSpec, ids: Sequence[str], y: np.ndarray) -> np.ndarray | None:
    if spec.kind == "classifier":
        return _classes(spec, ids, y)
    if spec.kind == "two_stage_gap":
        return (y > spec.metal_threshold).astype(int)
    return None


def make_folds(
    n_rows: int,
    folds: int,
    seed: int,
    strata: np.ndarray | None = None,
    groups: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, validation) index pairs over the training rows.

    Grouped when ``groups`` are given (no group on both sides of a fold), stratified by
    ``strata`` when given, shuffled with ``seed``.
    """
    index = np.zeros((n_rows, 1))
    if groups is not None:
        codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
        if strata is not None:
            splitter: Any = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            return list(splitter.split(index, strata, codes))
        return list(GroupKFold(folds, shuffle=True, random_state=seed).split(index, None, codes))
    if strata is not None:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return list(splitter.split(index, strata))
    return list(KFold(folds, shuffle=True, random_state=seed).split(index))


# -- estimators ---------------------------------------------------------------------------------


def _stage_params(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The parameters of one stage: plain names, then ``stage__name`` overrides."""
    plain = {k: v for k, v in params.items() if "__" not in k}
    prefix = f"{stage}__"
    return {**plain, **{k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}}


def build_model(
    spec: ModelSpec, params: dict[str, Any], seed: int, decision: float | None = None
) -> BaseEstimator:
    """The unfitted estimator a spec describes, with ``params`` (spec names).

    ``decision`` is the two-stage model's decision probability (default: the spec's, else
    one half).
    """

    def pipeline(classify: bool, stage_params: dict[str, Any]) -> BaseEstimator:
        return build_pipeline(
            spec.algorithm, classify, stage_params, seed, spec.scale, spec.select_features
        )

    if spec.kind == "two_stage_gap":
        return TwoStageGapRegressor(
            classifier=pipeline(True, _stage_params(params, "classifier")),
            regressor=pipeline(False, _stage_params(params, "regressor")),
            threshold=spec.metal_threshold,
            decision=decision if decision is not None else (spec.gap_decision or 0.5),
        )
    return pipeline(spec.kind == "classifier", _stage_params(params, "model"))


def _outputs(
    kind: str, estimator: BaseEstimator, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(point prediction, probability or None, Mondrian category or None)."""
    if kind == "classifier":
        probability = estimator.predict_proba(x)[:, 1]
        return (probability >= 0.5).astype(np.float64), probability, None
    if kind == "two_stage_gap":
        probability = estimator.gap_probability(x)
        point = estimator.combine(probability, estimator.regressor_.predict(x))
        return point, probability, gap_category(probability, estimator.decision)
    return np.asarray(estimator.predict(x), dtype=np.float64), None, None


def gap_category(probability: np.ndarray, decision: float = 0.5) -> np.ndarray:
    """Mondrian category of a two-stage prediction by its probability of a gap.

    Rows predicted to have a gap (probability at least ``decision``) are calibrated on
    their own; rows predicted metallic are split into confident (probability below a fifth
    of ``decision``) and doubtful ones, so that a doubtful metal's interval can reach up to
    the gaps its look-alikes turned out to have.
    """
    doubtful = np.where(probability >= decision / 5, "metal?", "metal")
    return np.where(probability >= decision, "gap", doubtful)


#: Decision probabilities tried when the two-stage model's is chosen by cross-validation.
DECISION_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def choose_decision(
    y: np.ndarray, probability: np.ndarray, gap: np.ndarray, metal_value: float
) -> float:
    """The decision probability with the smallest out-of-fold absolute error.

    Ties go to the value nearest one half (the optimum for calibrated probabilities).
    """
    errors = [
        (float(np.mean(np.abs(np.where(probability >= t, gap, metal_value) - y))), abs(t - 0.5), t)
        for t in DECISION_GRID
    ]
    return min(errors)[2]


@contextlib.contextmanager
def _parallel(dask_address: str | None) -> Iterator[int | None]:
    """joblib's backend for the search: the Dask cluster at the address, else serial."""
    if not dask_address:
        yield None
        return
    import joblib
    from distributed import Client

    with Client(dask_address) as _client, joblib.parallel_config(backend="dask"):
        yield -1


def search_parameters(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    seed: int,
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Hyperparameter search by cross-validation over the given folds (training rows only).

    Returns
    -------
    dict
        ``method``, ``candidates``, ``best_params`` (spec names), ``best_cv_score`` and the
        ``scoring`` used (negated MAE for regressors, negated log-loss for classifiers).
    """
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV, RandomizedSearchCV

    base = build_model(spec, spec.params, seed)
    space = spec.search_space or DEFAULT_SEARCH_SPACES[spec.algorithm]
    mapping = param_names(base, list(space))
    distributions = {nested: list(space[name]) for nested, name in mapping.items()}
    combinations = math.prod(len(v) for v in distributions.values())
    scoring = "neg_log_loss" if spec.kind == "classifier" else "neg_mean_absolute_error"
    with _parallel(dask_address) as n_jobs:
        # Both searches score the same folds the same way and never refit on all rows.
        common = {
            "cv": folds,
            "scoring": scoring,
            "refit": False,
            "random_state": seed,
            "n_jobs": n_jobs,
            "error_score": "raise",
        }
        candidates = min(spec.search_iterations, combinations)
        if spec.search == "halving":
            n_rows = len(y)
            searcher: Any = HalvingRandomSearchCV(
                base,
                distributions,
                n_candidates=candidates,
                factor=3,
                min_resources=min(n_rows, max(n_rows // 9, 20 * len(folds))),
                **common,
            )
        else:
            searcher = RandomizedSearchCV(base, distributions, n_iter=candidates, **common)
        searcher.fit(x, y)
    best = {}
    for nested, value in searcher.best_params_.items():
        stage = nested.split("__")[0]
        name = nested.rsplit("__", 1)[1]
        best[name if stage == "model" else f"{stage}__{name}"] = _plain(value)
    return {
        "method": spec.search,
        # Successive halving scores the survivors of each round again on more rows.
        "candidates": int(
            getattr(searcher, "n_candidates_", [len(searcher.cv_results_["params"])])[0]
        ),
        "evaluations": len(searcher.cv_results_["params"]) * len(folds),
        "best_params": best,
        "best_cv_score": float(searcher.best_score_),
        "scoring": scoring,
    }


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# -- training -----------------------------------------------------------------------------------


def train_surrogate(
    spec: ModelSpec,
    labels: list[str],
    train: tuple[list[str], np.ndarray, np.ndarray],
    seed: int,
    groups: Sequence[str] | None = None,
    featurization: dict[str, Any] | None = None,
    dask_address: str | None = None,
) -> SurrogateModel:
    """Fit a surrogate on the training rows, with cross-validation and calibration.

    Parameters
    ----------
    spec
        The model's spec.
    labels
        Feature labels, one per column of the matrix.
    train
        ``(ids, features, labels)`` of the training rows.
    seed
        Random seed of folds, search and fits.
    groups
        Each training row's group (formula or chemical system) for grouped folds; None
        for random folds.
    featurization
        The featurization description the features came from (kept with the model so
        that prediction computes the same features).
    dask_address
        A Dask scheduler to run the search's fits on; None runs them here.

    Raises
    ------
    ModelError
        If the training data fail :func:`check_training_data` or a fit fails.
    """
    ids, x, y_raw = train
    x = np.asarray(x, dtype=np.float64)
    check_training_data(spec, ids, x, y_raw, labels, groups)
    y_values = np.asarray(y_raw, dtype=np.float64)
    y = _classes(spec, ids, y_values).astype(np.float64) if spec.kind == "classifier" else y_values
    strata = _strata(spec, ids, y_values)
    folds = make_folds(len(y), spec.cv_folds, seed, strata, groups)

    search = None
    params = dict(spec.params)
    if spec.search != "none":
        search = search_parameters(spec, x, y, folds, seed, dask_address)
        params.update(search["best_params"])

    calibration: Calibration | None = None
    parts: dict[str, Any] = {"difficulty": None, "conditional": None}
    cv_metrics: dict[str, Any] = {}
    decision = None
    if spec.interval in ("cv", "none") or spec.search != "none":
        oof, gap = _out_of_fold(spec, params, seed, x, y, folds)
        if spec.kind == "two_stage_gap" and spec.gap_decision is None:
            assert oof[1] is not None and gap is not None
            metal_value = float(np.median(y[y <= spec.metal_threshold]))
            decision = choose_decision(y, oof[1], gap, metal_value)
            point = np.where(oof[1] >= decision, gap, metal_value)
            if spec.clip_min is not None:
                point = np.maximum(point, spec.clip_min)
            oof = (point, oof[1], gap_category(oof[1], decision))
        cv_metrics = _scores(spec, y, oof[0], oof[1])
        if decision is not None:
            cv_metrics["gap_decision"] = decision
        if spec.interval == "cv":
            calibration, parts = _interval_parts(spec, x, y, oof, gap, folds, "cv", seed)
    if spec.interval == "split":
        fit_rows, calibration_rows = _calibration_part(len(y), seed, strata, groups)
        final = build_model(spec, params, seed, decision).fit(x[fit_rows], y[fit_rows])
        x_cal, y_cal = x[calibration_rows], y[calibration_rows]
        held = _outputs(spec.kind, final, x_cal)
        held_gap = final.regressor_.predict(x_cal) if spec.kind == "two_stage_gap" else None
        # The difficulty models are cross-fitted inside the calibration part, which the
        # fitted model never saw.
        cal_groups = None if groups is None else [groups[i] for i in calibration_rows]
        if cal_groups is not None and len(set(cal_groups)) < spec.cv_folds:
            cal_groups = None
        cal_folds = make_folds(len(y_cal), spec.cv_folds, seed + 2, None, cal_groups)
        calibration, parts = _interval_parts(
            spec, x_cal, y_cal, held, held_gap, cal_folds, "split", seed
        )
        trained_ids = [ids[i] for i in fit_rows]
    else:
        final = build_model(spec, params, seed, decision).fit(x, y)
        trained_ids = list(ids)
    library = library_of(spec.algorithm)
    versions = {
        package: installed_version(package)
        # xgboost also fits the difficulty models of adaptive intervals.
        for package in dict.fromkeys((library, "numpy", "matscreen", "scikit-learn", "xgboost"))
    }
    if spec.algorithm != "xgboost":
        versions["skops"] = installed_version("skops")
    model = SurrogateModel(
        target=spec.target,
        kind=spec.kind,
        algorithm=spec.algorithm,
        params={**DEFAULT_PARAMS[spec.algorithm], **params},
        feature_labels=list(labels),
        train_ids=trained_ids,
        train_label_mean=float(np.mean(y_values)),
        clip_min=spec.clip_min,
        positive_at_most=spec.positive_at_most,
        calibration=calibration.to_dict() if calibration is not None else None,
        cv_metrics=json_safe(cv_metrics),
        search=json_safe(search),
        versions=versions,
        estimator=estimator_to_dict(final),
        featurization=featurization,
        difficulty=parts["difficulty"],
        conditional=parts["conditional"],
        domain=fit_domain(x, folds).to_dict(),
    )
    object.__setattr__(model, "_fitted", final)
    return model


def _out_of_fold(
    spec: ModelSpec,
    params: dict[str, Any],
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[tuple[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray | None]:
    """Predictions of every row by the fold model that did not see it.

    Returns
    -------
    ((point, probability or None, category or None), gap or None)
        The outputs as :func:`_outputs` gives them, and for the two-stage model the
        regressor's gap of every row (for choosing the decision probability).
    """
    point = np.empty(len(y))
    probability = np.empty(len(y)) if spec.kind != "regressor" else None
    category = np.empty(len(y), dtype=object) if spec.kind == "two_stage_gap" else None
    gap = np.empty(len(y)) if spec.kind == "two_stage_gap" else None
    template = build_model(spec, params, seed)
    for fit_rows, held_rows in folds:
        fold_model = clone(template).fit(x[fit_rows], y[fit_rows])
        p, prob, cat = _outputs(spec.kind, fold_model, x[held_rows])
        point[held_rows] = p
        if probability is not None and prob is not None:
            probability[held_rows] = prob
        if category is not None and cat is not None:
            category[held_rows] = cat
        if gap is not None:
            gap[held_rows] = fold_model.regressor_.predict(x[held_rows])
    if spec.clip_min is not None and spec.kind != "classifier":
        point = np.maximum(point, spec.clip_min)
    return (point, probability, category), gap


def _calibration_part(
    n_rows: int, seed: int, strata: np.ndarray | None, groups: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit, rows to calibrate on) for split-conformal intervals."""
    parts = round(1 / SPLIT_CALIBRATION_FRACTION)
    fit_rows, calibration_rows = make_folds(n_rows, parts, seed + 1, strata, groups)[0]
    return fit_rows, calibration_rows


def _interval_parts(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    outputs: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    gap: np.ndarray | None,
    folds: list[tuple[np.ndarray, np.ndarray]],
    method: str,
    seed: int,
) -> tuple[Calibration, dict[str, Any]]:
    """The calibration of the displayed intervals, and the difficulty and conditional parts.

    Parameters
    ----------
    x, y
        Features and labels of the calibration rows.
    outputs
        The model's (point, probability, category) for them, made without seeing them.
    gap
        Two-stage models: the regressor's gap for them, made without seeing them.
    folds
        Folds over the calibration rows, for cross-fitting the difficulty models.

    Returns
    -------
    (Calibration, {"difficulty": dict or None, "conditional": dict or None})
    """
    point, probability, category = outputs
    level = spec.interval_level
    if spec.kind == "classifier":
        # Score of a row: one minus the probability the model gave its true class.
        assert probability is not None
        truth = np.where(y == 1, probability, 1.0 - probability)
        calibration = calibrate(np.ones(len(y)), truth, method, level)
        return calibration, {"difficulty": None, "conditional": None}
    if spec.clip_min is not None:
        point = np.maximum(point, spec.clip_min)
    if spec.kind == "regressor":
        calibration, difficulty = _normalized(spec, x, y, point, folds, method, seed)
        return calibration, {"difficulty": difficulty, "conditional": None}
    # Two-stage: the displayed interval of the combined prediction keeps one width per
    # Mondrian category (predicted gap, doubtful metal, metal): within a category its
    # residual is a spike at zero plus the gaps or false gaps, not a scale family that a
    # difficulty could normalize. The per-row widths go to the regressor's conditional
    # interval, calibrated on the rows that truly have a gap.
    calibration = calibrate(y, point, method, level, category)
    assert gap is not None
    rows = np.flatnonzero(y > spec.metal_threshold)
    gap_point = gap[rows] if spec.clip_min is None else np.maximum(gap[rows], spec.clip_min)
    own, own_difficulty = _normalized(
        spec, x[rows], y[rows], gap_point, _restrict(folds, rows), method, seed
    )
    conditional = {"calibration": own.to_dict(), "difficulty": own_difficulty}
    return calibration, {"difficulty": None, "conditional": conditional}


def _normalized(
    spec: ModelSpec,
    x: np.ndarray,
    y: np.ndarray,
    point: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    method: str,
    seed: int,
) -> tuple[Calibration, dict[str, Any] | None]:
    """Scores of ``adaptive`` widths (normalized by a cross-fitted difficulty model), or
    of ``constant`` ones when asked or when the rows are too few for a difficulty model."""
    level = spec.interval_level
    usable = all(len(fit) >= 2 and len(held) for fit, held in folds)
    if spec.interval_width == "constant" or len(y) < MIN_DIFFICULTY_ROWS or not usable:
        return calibrate(y, point, method, level), None
    residual = y - point
    estimator, oof, selection = cross_fit_difficulty(x, residual, folds, seed)
    if estimator is None:  # a constant difficulty predicted |r| best: constant widths
        return calibrate(y, point, method, level), {"selection": selection}
    floor = floor_of(residual)
    calibration = calibrate(y, point, method, level, None, oof + floor)
    return calibration, {**difficulty_to_dict(estimator, floor), "selection": selection}


def _restrict(
    folds: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds over a subset of the rows, with indices into that subset."""
    position = np.full(max((len(f) + len(h) for f, h in folds), default=0), -1)
    position[rows] = np.arange(len(rows))
    restricted = []
    for fit_rows, held_rows in folds:
        fit, held = position[fit_rows], position[held_rows]
        restricted.append((fit[fit >= 0], held[held >= 0]))
    return [(fit, held) for fit, held in restricted if len(held)]


def _scores(
    spec: ModelSpec, y: np.ndarray, point: np.ndarray, probability: np.ndarray | None
) -> dict[str, Any]:
    if spec.kind == "classifier":
        assert probability is not None
        return classification_metrics(y, probability)
    scores: dict[str, Any] = error_metrics(y, point)
    if spec.kind == "two_stage_gap" and probability is not None:
        has_gap = (y > spec.metal_threshold).astype(int)
        scores["gap_classifier"] = classification_metrics(has_gap, probability)
    return scores


# -- prediction ---------------------------------------------------------------------------------


def check_feature_labels(model: SurrogateModel, labels: Sequence[str], where: str) -> None:
    """Refuse features whose labels differ from those the model was fitted on.

    Raises
    ------
    ModelError
        Naming ``where``, the count of each and the first missing and unexpected labels.
    """
    if list(labels) == list(model.feature_labels):
        return
    missing = [label for label in model.feature_labels if label not in set(labels)]
    extra = [label for label in labels if label not in set(model.feature_labels)]
    detail = (
        f"missing {missing[:3]}, unexpected {extra[:3]}"
        if missing or extra
        else "same labels in another order"
    )
    raise ModelError(
        f"{where}: the {model.target} model was fitted on {len(model.feature_labels)} features, "
        f"got {len(labels)} that do not match ({detail})"
    )


def predict_surrogate(
    model: SurrogateModel,
    ids: Sequence[str],
    x: np.ndarray,
    labels: Sequence[str],
    level: float | None = None,
) -> Predictions:
    """Point predictions and conformal intervals (at ``level``, default the model's).

    Rows are predicted in blocks, so memory stays bounded on large inputs; every block
    also gets the rows' difficulties (``adaptive`` intervals), the two-stage model's
    conditional gap and interval, and the distances to the training rows.

    Raises
    ------
    ModelError
        If the feature labels differ from the model's, the matrix is misshapen, or a level
        is asked of a model without calibration.
    """
    check_feature_labels(model, labels, f"{model.target} prediction")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(model.feature_labels) or x.shape[0] != len(ids):
        raise ModelError(
            f"{model.target}: expected a ({len(ids)}, {len(model.feature_labels)}) feature "
            f"matrix, got {x.shape}"
        )
    if model.calibration is None and level is not None:
        raise ModelError(f"{model.target}: the model was trained without intervals")
    blocks = [_predict_block(model, x[i : i + _BLOCK]) for i in range(0, len(x), _BLOCK)]
    parts = {
        name: None
        if not blocks or blocks[0][name] is None
        else np.concatenate([b[name] for b in blocks])
        for name in _BLOCK_PARTS
    }
    if not blocks:
        parts = _empty_parts(model)
    point, probability = parts["point"], parts["probability"]
    assert point is not None
    used_level = None
    lower, upper = point.copy(), point.copy()
    if model.calibration is not None:
        calibration = Calibration(**model.calibration)
        used_level = calibration.level if level is None else level
        if model.is_classifier:
            assert probability is not None
            lower, upper = _prediction_sets(calibration, probability, point, used_level)
        else:
            lower, upper = _clipped(
                model,
                intervals(calibration, point, used_level, parts["category"], parts["difficulty"]),
            )
    gap_lower = gap_upper = None
    gap = parts["gap"]
    if gap is not None and model.conditional is not None and used_level is not None:
        conditional = Calibration(**model.conditional["calibration"])
        gap_lower, gap_upper = _clipped(
            model, intervals(conditional, gap, used_level, None, parts["gap_difficulty"])
        )
    distance = parts["distance"]
    domain = model.applicability_domain()
    return Predictions(
        list(ids),
        point,
        lower,
        upper,
        probability,
        used_level,
        gap_pred=gap,
        gap_lower=gap_lower,
        gap_upper=gap_upper,
        metal_value=model.fitted().metal_value_ if model.kind == "two_stage_gap" else None,
        domain_distance=distance,
        in_domain=None if distance is None or domain is None else distance <= domain.threshold,
    )


#: What :func:`_predict_block` gives for every row (None where the model has no such part).
_BLOCK_PARTS = (
    "point",
    "probability",
    "category",
    "gap",
    "difficulty",
    "gap_difficulty",
    "distance",
)


def _predict_block(model: SurrogateModel, x: np.ndarray) -> dict[str, np.ndarray | None]:
    """Every per-row output of the model for one block of rows."""
    estimator = model.fitted()
    parts: dict[str, np.ndarray | None] = dict.fromkeys(_BLOCK_PARTS)
    if model.kind == "two_stage_gap":
        probability = estimator.gap_probability(x)
        gap = np.asarray(estimator.regressor_.predict(x), dtype=np.float64)
        parts["point"] = np.asarray(estimator.combine(probability, gap), dtype=np.float64)
        parts["category"] = gap_category(probability, estimator.decision)
        parts["probability"] = probability
        parts["gap"] = gap if model.clip_min is None else np.maximum(gap, model.clip_min)
    else:
        parts["point"], parts["probability"], _ = _outputs(model.kind, estimator, x)
    if model.kind != "classifier" and model.clip_min is not None:
        parts["point"] = np.maximum(parts["point"], model.clip_min)
    for name, fitted in (
        ("difficulty", model.difficulty_model()),
        ("gap_difficulty", model.conditional_difficulty_model()),
    ):
        if fitted is not None:
            parts[name] = predict_difficulty(fitted[0], x) + fitted[1]
    domain = model.applicability_domain()
    if domain is not None:
        parts["distance"] = domain.distance(x)
    return parts


def _empty_parts(model: SurrogateModel) -> dict[str, np.ndarray | None]:
    """The parts of a prediction of no rows."""
    present = {
        "point": True,
        "probability": model.kind != "regressor",
        "category": model.kind == "two_stage_gap",
        "gap": model.kind == "two_stage_gap",
        "difficulty": model.difficulty_model() is not None,
        "gap_difficulty": model.conditional_difficulty_model() is not None,
        "distance": model.domain is not None,
    }
    return {name: np.empty(0) if there else None for name, there in present.items()}


def _clipped(
    model: SurrogateModel, bounds: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds raised to the model's ``clip_min``, if it has one."""
    lower, upper = bounds
    if model.clip_min is None:
        return lower, upper
    return np.maximum(lower, model.clip_min), np.maximum(upper, model.clip_min)


def _prediction_sets(
    calibration: Calibration, probability: np.ndarray, point: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest class of each conformal prediction set ({0}, {1} or {0, 1})."""
    scores = np.concatenate([np.asarray(s) for s in calibration.scores.values()])
    threshold = conformal_quantile(scores, level)
    has_one = 1.0 - probability <= threshold
    has_zero = probability <= threshold
    # An empty set (both classes improbable beyond the threshold) falls back to the point.
    lower = np.where(has_zero, 0.0, np.where(has_one, 1.0, point))
    upper = np.where(has_one, 1.0, np.where(has_zero, 0.0, point))
    return lower, upper
