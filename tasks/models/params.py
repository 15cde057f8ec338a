"""Which parameters each learning algorithm takes, and which values they may have.

A spec's ``params`` and ``search_space`` are checked here when the spec loads, against the
estimator :func:`matscreen.tasks.models.pipeline.build_estimator` builds for each stage of
the model (the one estimator of a ``regressor`` or ``classifier``; the classifier and the
regressor of a ``two_stage_gap`` model, where ``classifier__name`` and ``regressor__name``
set one stage only). The scikit-learn estimators are checked against their own
``_parameter_constraints``, so the check follows scikit-learn's releases; xgboost has no
such table, so :data:`XGBOOST_PARAMS` lists the parameters a spec may set, with their
ranges. Parameters matscreen sets itself (the random seed, the Gaussian process kernel) are
refused, as are values that break the fit: a negative tree count, a typo in a name.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: One problem: the key path below the model (``("params", "n_estimators")``,
#: ``("search_space", "max_depth", 2)``) and what is wrong there.
Problem = tuple[tuple[str | int, ...], str]


@dataclass(frozen=True)
class Range:
    """A number between two bounds; an int range refuses floats, neither takes a bool."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "left"

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is a number of this kind within the bounds."""
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            return False
        above = self.low is None or (
            value >= self.low if self.closed in ("left", "both") else value > self.low
        )
        below = self.high is None or (
            value <= self.high if self.closed in ("right", "both") else value < self.high
        )
        return above and below  # NaN fails both comparisons

    def __str__(self) -> str:
        left = "[" if self.closed in ("left", "both") and self.low is not None else "("
        right = "]" if self.closed in ("right", "both") and self.high is not None else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        name = "an int" if self.kind is int else "a float"
        return f"{name} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a few strings."""

    values: frozenset[str]

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one of the strings."""
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in sorted(self.values)) + "}"


def _options(*values: str) -> Options:
    return Options(frozenset(values))


_FRACTION = Range(float, 0.0, 1.0, "right")
_NON_NEGATIVE = Range(float, 0.0, None)

#: The xgboost parameters a spec may set (for both XGBRegressor and XGBClassifier), with
#: the values each may take (None where it may be None). Ranges follow xgboost's
#: documentation, narrowed where a value is legal but learns nothing (a learning rate or a
#: row fraction of 0).
XGBOOST_PARAMS: dict[str, tuple[Range | Options | None, ...]] = {
    "n_estimators": (Range(int, 1, None),),
    "max_depth": (Range(int, 0, None),),  # 0: no limit
    "max_leaves": (Range(int, 0, None),),  # 0: no limit
    "max_bin": (Range(int, 2, None),),
    "grow_policy": (_options("depthwise", "lossguide"),),
    "learning_rate": (Range(float, 0.0, 1.0, "right"),),
    "min_child_weight": (_NON_NEGATIVE,),
    "gamma": (_NON_NEGATIVE,),
    "max_delta_step": (_NON_NEGATIVE,),
    "subsample": (_FRACTION,),
    "colsample_bytree": (_FRACTION,),
    "colsample_bylevel": (_FRACTION,),
    "colsample_bynode": (_FRACTION,),
    "reg_alpha": (_NON_NEGATIVE,),
    "reg_lambda": (_NON_NEGATIVE,),
    "num_parallel_tree": (Range(int, 1, None),),
    "tree_method": (_options("hist", "approx", "exact", "auto"),),
    "n_jobs": (Range(int, None, None), None),
    "verbosity": (Range(int, 0, 3, "both"),),
}

#: Parameters of one xgboost stage only: the objectives whose outputs matscreen reads
#: (a value for regressors, a probability for classifiers), and the class weight.
XGBOOST_STAGE_PARAMS: dict[bool, dict[str, tuple[Range | Options | None, ...]]] = {
    False: {
        "objective": (_options("reg:squarederror", "reg:absoluteerror", "reg:pseudohubererror"),)
    },
    True: {
        "objective": (_options("binary:logistic"),),
        "scale_pos_weight": (Range(float, 0.0, None, "neither"),),
    },
}

#: The scikit-learn estimator of each (algorithm, classifier?) as build_estimator makes it.
SKLEARN_ESTIMATORS: dict[tuple[str, bool], str] = {
    ("random_forest", False): "sklearn.ensemble.RandomForestRegressor",
    ("random_forest", True): "sklearn.ensemble.RandomForestClassifier",
    ("gradient_boosting", False): "sklearn.ensemble.HistGradientBoostingRegressor",
    ("gradient_boosting", True): "sklearn.ensemble.HistGradientBoostingClassifier",
    ("kernel_ridge", False): "sklearn.kernel_ridge.KernelRidge",
    ("gaussian_process", False): "sklearn.gaussian_process.GaussianProcessRegressor",
    ("gaussian_process", True): "sklearn.gaussian_process.GaussianProcessClassifier",
}

#: Parameters matscreen adds for an algorithm: the Gaussian process kernel's initial
#: length scale and noise level (the kernel is built from them).
MATSCREEN_PARAMS: dict[str, dict[str, tuple[Range | Options | None, ...]]] = {
    "gaussian_process": {
        "length_scale": (Range(float, 0.0, None, "neither"),),
        "noise_level": (Range(float, 0.0, None, "neither"),),
    },
}

_SEED = "set by matscreen from split.seed; remove it"

#: Parameters matscreen sets itself, and what to do instead.
RESERVED: dict[str, dict[str, str]] = {
    "xgboost": {"random_state": _SEED},
    "random_forest": {"random_state": _SEED},
    "gradient_boosting": {"random_state": _SEED},
    "gaussian_process": {
        "random_state": _SEED,
        "kernel": "built by matscreen; set length_scale and noise_level instead",
        "normalize_y": "set by matscreen (labels are always normalized); remove it",
    },
}

#: Values an estimator accepts that cannot work on matscreen's feature rows.
REFUSED_VALUES: dict[tuple[str, str], dict[Any, str]] = {
    ("kernel_ridge", "kernel"): {
        "precomputed": "matscreen passes feature rows, not a kernel matrix"
    },
}

_STAGES = ("classifier", "regressor")


def _stages(kind: str, name: str) -> tuple[list[tuple[str | None, bool]], str] | str:
    """The stages (label, is a classifier) a parameter name applies to, and its bare name;
    or why the name's stage prefix is not valid."""
    prefix, sep, bare = name.partition("__")
    if kind == "two_stage_gap":
        if not sep:
            return [("classifier", True), ("regressor", False)], name
        if prefix in _STAGES and bare:
            return [(prefix, prefix == "classifier")], bare
        return f"unknown stage {prefix!r}: a two_stage_gap model has 'classifier' and 'regressor'"
    if sep:
        return "stage prefixes (classifier__, regressor__) apply to kind two_stage_gap only"
    return [(None, kind == "classifier")], name


def _estimator(algorithm: str, classify: bool) -> Any:
    path = SKLEARN_ESTIMATORS[(algorithm, classify)]
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _own_table(algorithm: str, classify: bool) -> dict[str, tuple[Range | Options | None, ...]]:
    """The parameters matscreen itself knows the values of, for one stage."""
    if algorithm == "xgboost":
        return {**XGBOOST_PARAMS, **XGBOOST_STAGE_PARAMS[classify]}
    return dict(MATSCREEN_PARAMS.get(algorithm, {}))


def known_params(algorithm: str, classify: bool) -> list[str]:
    """The parameter names a spec may give one stage of an algorithm, sorted.

    Raises
    ------
    ValueError
        If the algorithm is unknown or cannot be a classifier.
    """
    names = set(_own_table(algorithm, classify))
    if algorithm != "xgboost":
        if (algorithm, classify) not in SKLEARN_ESTIMATORS:
            role = "classifier" if classify else "regressor"
            raise ValueError(f"{algorithm} cannot be a {role}")
        names |= set(_estimator(algorithm, classify)._get_param_names())
    return sorted(names - set(RESERVED.get(algorithm, {})))


def _unknown(name: str, known: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"unknown parameter of {where}; did you mean {close[0]!r}?"
    return f"unknown parameter of {where} (known: {', '.join(known)})"


def name_problem(algorithm: str, kind: str, name: str) -> str | None:
    """Why ``name`` cannot be a parameter of this model, or None if it can.

    Raises
    ------
    ValueError
        If the algorithm is unknown or cannot be of this kind.
    """
    stages = _stages(kind, name)
    if isinstance(stages, str):
        return stages
    targets, bare = stages
    reserved = RESERVED.get(algorithm, {})
    if bare in reserved:
        return reserved[bare]
    for stage, classify in targets:
        known = known_params(algorithm, classify)
        if bare in known:
            continue
        role, other = ("classifier", "regressor") if classify else ("regressor", "classifier")
        others = known_params(algorithm, not classify) if _exists(algorithm, not classify) else []
        if bare in others and len(targets) > 1:
            return f"not a parameter of the {stage} stage; write {other}__{bare} to set it there"
        if bare in others:
            return f"a parameter of the {algorithm} {other}, not of its {role}"
        if len(targets) > 1:  # a plain name of a two-stage model: one of either stage's
            return _unknown(bare, sorted(set(known) | set(others)), algorithm)
        return _unknown(bare, known, f"the {algorithm} {stage} stage" if stage else algorithm)
    return None


def _exists(algorithm: str, classify: bool) -> bool:
    return algorithm == "xgboost" or (algorithm, classify) in SKLEARN_ESTIMATORS


def _sklearn_check(cls: Any, name: str, value: Any) -> str | None:
    """scikit-learn's own requirement ``value`` breaks (``an int in the range …``), or None."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    constraints = cls._parameter_constraints.get(name)
    if constraints is None:
        return None  # scikit-learn does not check it either
    if isinstance(value, bool) and not any(
        c is bool or (isinstance(c, str) and c in ("boolean", "verbose", "no_validation"))
        for c in constraints
    ):
        value = _NotAValue()  # a bool is an int to Python, never a count or size to a user
    try:
        validate_parameter_constraints({name: constraints}, {name: value}, caller_name=cls.__name__)
    except InvalidParameterError as exc:
        found = re.search(r" must be (.*)\. Got .* instead\.$", str(exc), re.DOTALL)
        return found.group(1) if found else str(exc)
    return None


class _NotAValue:
    """Stands in for a value no constraint accepts, to obtain the constraint's wording."""

    def __repr__(self) -> str:
        return "<not a value>"


def _table_check(allowed: Sequence[Range | Options | None], value: Any) -> str | None:
    if any(value is None if a is None else a.allows(value) for a in allowed):
        return None
    texts = [str(a) for a in allowed]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


#: Upper bounds no library sets but a finished fit needs: a million trees take days and
#: gigabytes, and a typo of a few digits would otherwise run until killed.
PRACTICAL_MAXIMUM = {"n_estimators": 100_000, "max_iter": 1_000_000, "max_leaves": 2**20}


def _stage_check(algorithm: str, classify: bool, name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for one stage (``must be …``), or None."""
    refused = REFUSED_VALUES.get((algorithm, name), {})
    if isinstance(value, str) and value in refused:
        return refused[value]
    largest = PRACTICAL_MAXIMUM.get(name)
    if largest is not None and isinstance(value, int | float) and value > largest:
        return f"must be at most {largest:,} (a practical bound of matscreen's)"
    own = _own_table(algorithm, classify)
    requirement = (
        _table_check(own[name], value)
        if name in own
        else _sklearn_check(_estimator(algorithm, classify), name, value)
    )
    return None if requirement is None else f"must be {requirement}"


def value_problem(algorithm: str, kind: str, name: str, value: Any) -> str | None:
    """Why ``value`` is not valid for the parameter ``name``, or None if it is.

    ``name`` must have passed :func:`name_problem`.
    """
    stages = _stages(kind, name)
    assert not isinstance(stages, str), name
    targets, bare = stages
    for stage, classify in targets:
        why = _stage_check(algorithm, classify, bare, value)
        if why is not None:
            where = f" for the {stage} stage" if stage and len(targets) > 1 else ""
            return f"{value!r} is not valid{where}: {why}"
    return None


def param_problems(
    algorithm: str,
    kind: str,
    params: Mapping[str, Any],
    search_space: Mapping[str, Iterable[Any]] | None = None,
) -> list[Problem]:
    """Every unknown parameter and invalid value of a model's ``params`` and
    ``search_space``, each with its key path.

    Parameters
    ----------
    algorithm
        One of the spec's algorithms (``xgboost``, ``random_forest`` …).
    kind
        ``regressor``, ``classifier`` or ``two_stage_gap``.
    params, search_space
        The spec's values: parameter -> value, and parameter -> candidate values.

    Returns
    -------
    list of (path, message)
        ``(("params", "n_estimators"), "-3 is not valid: must be an int in the range
        [1, inf)")``; empty when everything is valid.

    Raises
    ------
    ValueError
        If the algorithm is unknown or cannot be of this kind.
    """
    problems: list[Problem] = []
    for name, value in params.items():
        problem = name_problem(algorithm, kind, name) or value_problem(algorithm, kind, name, value)
        if problem:
            problems.append((("params", name), problem))
    for name, values in (search_space or {}).items():
        problem = name_problem(algorithm, kind, name)
        if problem:
            problems.append((("search_space", name), problem))
            continue
        for i, value in enumerate(values):
            problem = value_problem(algorithm, kind, name, value)
            if problem:
                problems.append((("search_space", name, i), problem))
    return problems


def default_space_problem(algorithm: str, kind: str) -> str | None:
    """Why matscreen's default search space of an algorithm does not suit this kind of
    model, or None if it does (a search uses it when the spec gives no ``search_space``).

    Raises
    ------
    ValueError
        If the algorithm is unknown or cannot be of this kind.
    """
    from matscreen.tasks.models.pipeline import DEFAULT_SEARCH_SPACES

    problems = param_problems(algorithm, kind, {}, DEFAULT_SEARCH_SPACES[algorithm])
    if not problems:
        return None
    shown = "; ".join(f"{path[1]}: {message}" for path, message in problems)
    return f"the default space of {algorithm} does not suit kind {kind!r} ({shown}); give one"


def check_params(
    algorithm: str,
    kind: str,
    params: Mapping[str, Any],
    search_space: Mapping[str, Iterable[Any]] | None = None,
) -> None:
    """Refuse unknown parameters and invalid values (see :func:`param_problems`).

    Raises
    ------
    ValueError
        Naming every parameter at fault: ``params.n_estimators: -3 is not valid: must be
        an int in the range [1, inf)``; or if the algorithm is unknown or cannot be of
        this kind.
    """
    problems = param_problems(algorithm, kind, params, search_space)
    if problems:
        raise ValueError(
            "; ".join(f"{'.'.join(map(str, path))}: {message}" for path, message in problems)
        )
