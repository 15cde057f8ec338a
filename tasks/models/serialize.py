"""Fitted pipelines as JSON documents: xgboost's native JSON, skops for scikit-learn.

No pickle: an xgboost model is kept in xgboost's own JSON format (readable by any xgboost
of the same or a later version), a scikit-learn estimator through skops, whose loader
refuses any type it is not told to trust; the preprocessing state is plain arrays.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.pipeline import (
    FeaturePreprocessor,
    TwoStageGapRegressor,
)

#: Modules whose types a skops file may hold: the estimators matscreen builds and their
#: numeric state. Anything else in a file is refused.
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def _xgboost_to_dict(model: Any) -> dict[str, Any]:
    # The scikit-learn wrapper writes its own attributes (classes, estimator type) into the
    # file only through save_model with a file name.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.json")
        model.save_model(path)
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    return {"type": "xgboost", "class": type(model).__name__, "model": document}


def _xgboost_from_dict(state: dict[str, Any]) -> Any:
    import xgboost

    cls = {"XGBRegressor": xgboost.XGBRegressor, "XGBClassifier": xgboost.XGBClassifier}
    if state["class"] not in cls:
        raise ModelError(f"unknown xgboost model class {state['class']!r}")
    model = cls[state["class"]]()
    model.load_model(bytearray(json.dumps(state["model"]).encode()))
    return model


def _skops_to_dict(model: Any) -> dict[str, Any]:
    import skops.io

    return {
        "type": "skops",
        "class": type(model).__name__,
        "data": base64.b64encode(skops.io.dumps(model)).decode("ascii"),
    }


def _skops_from_dict(state: dict[str, Any]) -> Any:
    try:
        import skops.io
    except ImportError as exc:
        raise ModelError(
            f"this model holds a scikit-learn {state['class']} stored with skops, which is not "
            "installed (pip install skops)"
        ) from exc
    data = base64.b64decode(state["data"])
    untrusted = skops.io.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
    if refused:
        raise ModelError(f"model file holds types matscreen does not load: {refused}")
    return skops.io.loads(data, trusted=untrusted)


def estimator_to_dict(estimator: BaseEstimator) -> dict[str, Any]:
    """A fitted pipeline or two-stage model as JSON types.

    Raises
    ------
    ModelError
        If the estimator is not one matscreen builds.
    """
    if isinstance(estimator, TwoStageGapRegressor):
        return {
            "type": "two_stage_gap",
            "threshold": estimator.threshold,
            "decision": estimator.decision,
            "metal_value": estimator.metal_value_,
            "classifier": estimator_to_dict(estimator.classifier_),
            "regressor": estimator_to_dict(estimator.regressor_),
        }
    if isinstance(estimator, Pipeline):
        preprocess, model = estimator.named_steps["prep"], estimator.named_steps["model"]
        if not isinstance(preprocess, FeaturePreprocessor):
            raise ModelError(f"unexpected preprocessing step {type(preprocess).__name__}")
        is_xgboost = type(model).__module__.startswith("xgboost")
        return {
            "type": "pipeline",
            "preprocess": preprocess.to_dict(),
            "model": _xgboost_to_dict(model) if is_xgboost else _skops_to_dict(model),
        }
    raise ModelError(f"cannot store a {type(estimator).__name__}")


def estimator_from_dict(state: dict[str, Any]) -> BaseEstimator:
    """Rebuild a fitted estimator from :func:`estimator_to_dict`.

    Raises
    ------
    ModelError
        If the document names an unknown type or holds types that are not trusted.
    """
    kind = state.get("type")
    if kind == "two_stage_gap":
        built = TwoStageGapRegressor(threshold=state["threshold"], decision=state["decision"])
        built.classifier_ = estimator_from_dict(state["classifier"])
        built.regressor_ = estimator_from_dict(state["regressor"])
        built.metal_value_ = float(state["metal_value"])
        return built
    if kind == "pipeline":
        model_state = state["model"]
        if model_state["type"] == "xgboost":
            model = _xgboost_from_dict(model_state)
        elif model_state["type"] == "skops":
            model = _skops_from_dict(model_state)
        else:
            raise ModelError(f"unknown model format {model_state['type']!r}")
        preprocess = FeaturePreprocessor.from_dict(state["preprocess"])
        return Pipeline([("prep", preprocess), ("model", model)])
    raise ModelError(f"unknown stored estimator type {kind!r}")


def library_of(algorithm: str) -> str:
    """The package whose version decides whether a stored model of ``algorithm`` loads."""
    return "xgboost" if algorithm == "xgboost" else "scikit-learn"
