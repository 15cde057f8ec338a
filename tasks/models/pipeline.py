"""The fitted pipelines: preprocessing plus estimator, and the two-stage band-gap model.

Everything that learns from data — imputation medians, which columns are kept, the scaling,
the feature selection, the estimator — is a step of one scikit-learn pipeline. A
cross-validation fold or a search candidate clones and fits the whole pipeline on its own
training rows, so no statistic of a validation or held-out row leaks into a fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, TransformerMixin, clone
from sklearn.pipeline import Pipeline

from matscreen.tasks.errors import ModelError

#: Defaults for every xgboost model; a spec's ``params`` override them key by key.
#: Chosen by 5-fold CV on the CMR perovskites with the ``sites`` features (heat of
#: formation MAE, eV): 600 trees of depth 6, learning rate 0.05, 80 % of the columns per
#: tree 0.166; 30 % of the columns 0.162; 1,500 shallower trees (depth 5) at rate 0.03 on
#: 70 % of the rows 0.158 (20 % of the columns: the same); deeper trees (8, 0.167) and more
#: trees of depth 4 (2,000: 0.161) did worse. 64 histogram
#: bins instead of xgboost's 256: the same MAE in half the time.
DEFAULT_XGBOOST_PARAMS: dict[str, Any] = {
    "n_estimators": 1500,
    "learning_rate": 0.03,
    "max_depth": 5,
    "min_child_weight": 1.0,
    "subsample": 0.7,
    "colsample_bytree": 0.3,
    "max_bin": 64,
    "tree_method": "hist",
    "n_jobs": 1,
}

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "xgboost": dict(DEFAULT_XGBOOST_PARAMS),
    "random_forest": {"n_estimators": 300, "max_features": 0.33, "n_jobs": 1},
    "gradient_boosting": {"max_iter": 500, "learning_rate": 0.05, "max_leaf_nodes": 31},
    "kernel_ridge": {"kernel": "rbf", "alpha": 0.01, "gamma": 0.005},
    "gaussian_process": {"length_scale": 3.0, "noise_level": 0.1, "n_restarts_optimizer": 1},
}

#: Candidate values tried by a hyperparameter search when the spec gives no space.
DEFAULT_SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "xgboost": {
        "n_estimators": [400, 800, 1500],
        "learning_rate": [0.02, 0.05, 0.1],
        "max_depth": [4, 6, 8, 10],
        "min_child_weight": [1.0, 3.0],
        "subsample": [0.7, 0.85, 1.0],
        "colsample_bytree": [0.3, 0.5, 0.8],
    },
    "random_forest": {
        "n_estimators": [200, 500],
        "max_features": [0.2, 0.33, 0.5, 1.0],
        "min_samples_leaf": [1, 2, 4],
    },
    "gradient_boosting": {
        "max_iter": [300, 600, 1000],
        "learning_rate": [0.03, 0.05, 0.1],
        "max_leaf_nodes": [15, 31, 63],
        "l2_regularization": [0.0, 0.1, 1.0],
    },
    "kernel_ridge": {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "gamma": [1e-3, 3e-3, 1e-2, 3e-2]},
    # The kernel's length scale and noise are fitted by marginal likelihood in every fit.
    "gaussian_process": {"alpha": [1e-8, 1e-4, 1e-2], "n_restarts_optimizer": [0, 2]},
}

#: Algorithms whose fit depends on the scale of the features (standardized by default).
SCALE_SENSITIVE = ("kernel_ridge", "gaussian_process")


class FeaturePreprocessor(TransformerMixin, BaseEstimator):
    """Imputation, removal of constant columns, scaling and feature selection.

    Its fitted state is a few arrays, stored as JSON with the model.

    Parameters
    ----------
    impute
        Replace missing (NaN or infinite) values by the training median of the column; off
        for xgboost, which routes missing values itself.
    scale
        Standardize each kept column to zero mean and unit variance.
    select
        Keep only this many columns: those whose absolute correlation with the label on
        the training rows is largest. None keeps every non-constant column.
    """

    def __init__(self, impute: bool = True, scale: bool = False, select: int | None = None):
        self.impute = impute
        self.scale = scale
        self.select = select

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> FeaturePreprocessor:
        """Learn medians, kept columns, scaling and the selection from the training rows."""
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        with np.errstate(all="ignore"):
            masked = np.where(finite, x, np.nan)
            has_value = finite.any(axis=0)
            medians = np.zeros(x.shape[1])
            medians[has_value] = np.nanmedian(masked[:, has_value], axis=0)
        filled = np.where(finite, x, medians)
        spread = filled.std(axis=0)
        keep = np.flatnonzero(spread > 0)
        if self.select is not None and y is not None and self.select < len(keep):
            centred = filled[:, keep] - filled[:, keep].mean(axis=0)
            target = np.asarray(y, dtype=np.float64) - np.mean(y)
            denominator = np.sqrt((centred**2).sum(axis=0) * (target**2).sum())
            with np.errstate(all="ignore"):
                correlation = np.abs(centred.T @ target) / denominator
            correlation = np.nan_to_num(correlation, nan=0.0)
            # Stable sort: ties keep their column order, so a fit is reproducible.
            best = np.argsort(-correlation, kind="stable")[: self.select]
            keep = np.sort(keep[best])
        self.n_features_in_ = x.shape[1]
        self.medians_ = medians
        self.keep_ = keep
        self.mean_ = filled[:, keep].mean(axis=0) if len(keep) else np.zeros(0)
        std = filled[:, keep].std(axis=0) if len(keep) else np.zeros(0)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Apply the learned imputation, column choice and scaling."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ModelError(
                f"preprocessing expects {self.n_features_in_} feature columns, got {x.shape}"
            )
        if self.impute:
            x = np.where(np.isfinite(x), x, self.medians_)
        else:
            x = np.where(np.isinf(x), np.nan, x)
        x = x[:, self.keep_]
        if self.scale:
            x = (x - self.mean_) / self.scale_
        return x

    def to_dict(self) -> dict[str, Any]:
        """The fitted state as JSON types."""
        return {
            "impute": self.impute,
            "scale": self.scale,
            "select": self.select,
            "n_features_in": int(self.n_features_in_),
            "medians": self.medians_.tolist(),
            "keep": self.keep_.tolist(),
            "mean": self.mean_.tolist(),
            "scale_": self.scale_.tolist(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> FeaturePreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_dict`."""
        built = cls(impute=state["impute"], scale=state["scale"], select=state["select"])
        built.n_features_in_ = int(state["n_features_in"])
        built.medians_ = np.array(state["medians"], dtype=np.float64)
        built.keep_ = np.array(state["keep"], dtype=np.int64)
        built.mean_ = np.array(state["mean"], dtype=np.float64)
        built.scale_ = np.array(state["scale_"], dtype=np.float64)
        return built


def _gaussian_process(classify: bool, params: dict[str, Any], seed: int) -> BaseEstimator:
    from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    params = dict(params)
    length = float(params.pop("length_scale"))
    noise = float(params.pop("noise_level"))
    # Bounding the length scale away from zero keeps the likelihood optimizer out of the
    # degenerate optimum where every row is its own island and all else is noise.
    rbf = RBF(length, length_scale_bounds=(1e-1, 1e4))
    if classify:
        return GaussianProcessClassifier(kernel=ConstantKernel() * rbf, random_state=seed, **params)
    kernel = ConstantKernel() * rbf + WhiteKernel(noise, noise_level_bounds=(1e-6, 1e2))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed, **params)


def build_estimator(
    algorithm: str, classify: bool, params: dict[str, Any], seed: int
) -> BaseEstimator:
    """An unfitted estimator of one algorithm with the defaults overridden by ``params``.

    Raises
    ------
    ModelError
        If the algorithm is unknown, cannot classify, or rejects a parameter.
    """
    if algorithm not in DEFAULT_PARAMS:
        raise ModelError(f"unknown algorithm {algorithm!r} (known: {sorted(DEFAULT_PARAMS)})")
    merged = {**DEFAULT_PARAMS[algorithm], **params}
    try:
        if algorithm == "xgboost":
            import xgboost

            cls = xgboost.XGBClassifier if classify else xgboost.XGBRegressor
            return cls(**merged, random_state=seed)
        if algorithm == "random_forest":
            from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

            cls = RandomForestClassifier if classify else RandomForestRegressor
            return cls(**merged, random_state=seed)
        if algorithm == "gradient_boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
            from sklearn.ensemble import HistGradientBoostingRegressor as HGBR

            return (HGBC if classify else HGBR)(**merged, random_state=seed)
        if algorithm == "kernel_ridge":
            from sklearn.kernel_ridge import KernelRidge

            if classify:
                raise ModelError("kernel_ridge cannot be a classifier")
            return KernelRidge(**merged)
        return _gaussian_process(classify, merged, seed)
    except TypeError as exc:
        raise ModelError(f"{algorithm}: bad parameter in {sorted(params)}: {exc}") from exc


def build_pipeline(
    algorithm: str,
    classify: bool,
    params: dict[str, Any],
    seed: int,
    scale: bool | None = None,
    select: int | None = None,
) -> Pipeline:
    """Preprocessing followed by the estimator, as one unfitted pipeline.

    ``scale`` None standardizes for the scale-sensitive algorithms only.
    """
    preprocess = FeaturePreprocessor(
        impute=algorithm != "xgboost",
        scale=algorithm in SCALE_SENSITIVE if scale is None else scale,
        select=select,
    )
    return Pipeline(
        [("prep", preprocess), ("model", build_estimator(algorithm, classify, params, seed))]
    )


class TwoStageGapRegressor(RegressorMixin, BaseEstimator):
    """Band gaps in two stages: metal or not, then how large the gap of a non-metal is.

    About 96 % of the CMR perovskites are metals (gap 0): a single regressor smears the
    gaps of the few semiconductors towards zero and gives metals small positive gaps. Here
    a classifier learns gap > ``threshold`` on every training row, a regressor learns the
    gap on the non-metal rows only, and a row gets the regressor's gap when the classifier
    gives it a gap with probability of at least ``decision``, else ``metal_value`` (the
    median label of the metal rows, 0 for band gaps).

    Parameters
    ----------
    classifier, regressor
        Unfitted pipelines of the two stages.
    threshold
        Labels at or below it count as metals.
    decision
        Probability of a gap from which a row gets the regressor's gap. One half is the
        absolute-error optimum for calibrated probabilities; the training protocol may
        choose another by cross-validation (boosted classifiers on rare classes are often
        under-confident).
    """

    def __init__(
        self,
        classifier: Any = None,
        regressor: Any = None,
        threshold: float = 0.0,
        decision: float = 0.5,
    ):
        self.classifier = classifier
        self.regressor = regressor
        self.threshold = threshold
        self.decision = decision

    def fit(self, x: np.ndarray, y: np.ndarray) -> TwoStageGapRegressor:
        """Fit the classifier on every row and the regressor on the non-metal rows.

        Raises
        ------
        ModelError
            If the rows hold fewer than two metals or two non-metals.
        """
        y = np.asarray(y, dtype=np.float64)
        has_gap = y > self.threshold
        if has_gap.sum() < 2 or (~has_gap).sum() < 2:
            raise ModelError(
                f"two-stage gap model: {int(has_gap.sum())} rows with a gap above "
                f"{self.threshold} and {int((~has_gap).sum())} without; at least 2 of each needed"
            )
        self.classifier_ = clone(self.classifier).fit(x, has_gap.astype(int))
        self.regressor_ = clone(self.regressor).fit(x[has_gap], y[has_gap])
        self.metal_value_ = float(np.median(y[~has_gap]))
        return self

    def gap_probability(self, x: np.ndarray) -> np.ndarray:
        """Probability that each row has a gap above the threshold (is not a metal)."""
        return self.classifier_.predict_proba(x)[:, 1]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The regressor's gap where the probability of a gap reaches ``decision``, else the
        metal value."""
        return self.combine(self.gap_probability(x), self.regressor_.predict(x))

    def combine(self, probability: np.ndarray, gap: np.ndarray) -> np.ndarray:
        """The combined prediction from the two stages' outputs."""
        return np.where(probability >= self.decision, gap, self.metal_value_)


def param_names(estimator: BaseEstimator, names: list[str]) -> dict[str, str]:
    """Map a spec's parameter names to the estimator's nested scikit-learn names.

    A name applies to the estimator step of every stage (``max_depth`` →
    ``model__max_depth``, or ``classifier__model__max_depth`` and
    ``regressor__model__max_depth`` for the two-stage model); a name starting with
    ``classifier__`` or ``regressor__`` applies to that stage only.
    """
    mapped: dict[str, str] = {}
    for name in names:
        if isinstance(estimator, TwoStageGapRegressor):
            stage, _, rest = name.partition("__")
            if stage in ("classifier", "regressor") and rest:
                mapped[f"{stage}__model__{rest}"] = name
            else:
                mapped[f"classifier__model__{name}"] = name
                mapped[f"regressor__model__{name}"] = name
        else:
            mapped[f"model__{name}"] = name
    return mapped
