"""A trained surrogate as a stored document, and the predictions it gives."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.difficulty import (
    difficulty_from_dict,
)
from matscreen.tasks.models.domain import Domain
from matscreen.tasks.models.serialize import (
    estimator_from_dict,
    library_of,
)
from matscreen.tasks.versions import installed_version

#: Identifies a stored surrogate model and the layout of its document.
MODEL_FORMAT = "matscreen-surrogate"


#: Version 2 added the difficulty models, the conditional calibration of two-stage models
#: and the applicability domain.
MODEL_FORMAT_VERSION = 2


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
