"""Hyperparameter search by cross-validation over the training folds, serial or on Dask."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from matscreen.tasks.models.estimators import build_model
from matscreen.tasks.models.pipeline import (
    DEFAULT_SEARCH_SPACES,
    param_names,
)
from matscreen.tasks.spec import ModelSpec


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
