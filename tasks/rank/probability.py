"""Probability that a candidate meets every criterion, from its predictive distributions.

Each property a criterion names needs a predictive distribution per candidate, given by
columns of the candidate table next to the point prediction ``pred_<property>``, in one
of five forms:

interval
    ``lower_<property>`` and ``upper_<property>``: a central prediction interval at a
    stated coverage level (e.g. a 90 % conformal interval). The distribution is Gaussian
    on each side of the prediction, which is taken as the median, with the spread of each
    side chosen so that the interval's ends are the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles. For a symmetric interval (conformal intervals are) this
    is the Gaussian of mean ``pred`` and standard deviation
    ``(upper - lower) / (2 z)``, ``z`` the standard normal quantile of ``(1 + level) / 2``;
    an interval clipped on one side (a band gap's lower end at 0) keeps its honest spread
    on the other side instead of being averaged.
standard deviation
    ``std_<property>``: the Gaussian of mean ``pred`` and that standard deviation.
quantiles
    ``q<level>_<property>`` columns (``q0.05_band_gap``, ``q0.5_band_gap`` …), at least
    two levels: the CDF is piecewise linear through the points (quantile value, level).
    Quantiles that cross (a lower level with a larger value, as quantile regressors
    sometimes produce) are sorted per candidate first — the monotone rearrangement,
    which can only bring the estimate closer to the true quantiles. Outside the outermost
    quantiles the CDF goes on with the slope of the adjacent segment until it reaches 0
    or 1, so the tail mass lies within a comparable distance.
probability of 1
    ``prob_<property>``: for a 0/1 property (a classifier's "stable"), the probability
    that it is 1; the property meets its range with that probability if 1 is inside the
    range, plus the complement if 0 is.
hurdle
    ``prob_nonzero_<property>``, ``cond_pred_<property>``, ``cond_lower_<property>``,
    ``cond_upper_<property>`` and ``metal_value_<property>``: a two-stage model's mixture
    of a point mass and a continuous part. With probability ``1 - p`` (``p`` the
    ``prob_nonzero`` column) the value is ``metal_value`` (a metal's band gap, 0); with
    probability ``p`` it follows the conditional distribution given that it is not,
    which the interval form above builds from the conditional prediction and its
    interval (``cond_pred``, ``cond_lower``, ``cond_upper``, at the property's interval
    level). So ``P(value in [a, b]) = (1 - p) 1[metal_value in [a, b]] + p P_cond([a,
    b])``. The conditional part is not truncated at the metal value: like the interval
    form of a clipped interval, it keeps the Gaussian tail below the clipped lower end
    (mass that no range on a band gap counts). ``lower_``/``upper_`` columns may sit
    beside this form (the model's displayed interval) and are then not used.

A spread of zero is a point mass at the prediction; an infinite spread (a conformal
interval with too few calibration residuals to reach its level) gives a flat
distribution, whose probability of landing in a bounded range is 0. A candidate without
uncertainty for a property is an error, never a spread of zero.

Bounds are inclusive. Criteria on the same property are intersected into one range, since
they constrain the same quantity. Across properties the predictive distributions are
assumed independent, so the probability of meeting every criterion is the product of the
per-property probabilities. Errors of models trained on the same structures are usually
positively correlated, so the product is a conservative estimate for candidates that are
likely to pass and an optimistic one for candidates that are unlikely to; it orders
candidates sensibly either way, and it is what the per-property columns can be checked
against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from matscreen.tasks.errors import RankingError
from matscreen.tasks.rank.criteria import prediction_column
from matscreen.tasks.spec import CriterionSpec

#: Column of the probability of meeting every criterion.
SUCCESS_COLUMN = "p_success"


def lower_column(prop: str) -> str:
    """Name of the column holding the lower end of the prediction interval of ``prop``."""
    return f"lower_{prop}"


def upper_column(prop: str) -> str:
    """Name of the column holding the upper end of the prediction interval of ``prop``."""
    return f"upper_{prop}"


def std_column(prop: str) -> str:
    """Name of the column holding the predictive standard deviation of ``prop``."""
    return f"std_{prop}"


def quantile_column(prop: str, level: float) -> str:
    """Name of the column holding the predictive ``level`` quantile of ``prop``."""
    return f"q{level:g}_{prop}"


def class_probability_column(prop: str) -> str:
    """Name of the column holding the probability that the 0/1 property ``prop`` is 1."""
    return f"prob_{prop}"


def hurdle_columns(prop: str) -> dict[str, str]:
    """Names of the columns of the hurdle form of ``prop``, by role: ``probability`` (of
    the non-zero state), ``pred``, ``lower``, ``upper`` (the conditional prediction and
    interval) and ``metal_value`` (the value of the zero state)."""
    return {
        "probability": f"prob_nonzero_{prop}",
        "pred": f"cond_pred_{prop}",
        "lower": f"cond_lower_{prop}",
        "upper": f"cond_upper_{prop}",
        "metal_value": f"metal_value_{prop}",
    }


def probability_column(prop: str) -> str:
    """Name of the column holding the probability that ``prop`` meets its criteria."""
    return f"p_{prop}"


def quantile_columns(columns: list[str], prop: str) -> dict[float, str]:
    """The quantile columns of ``prop`` among ``columns``, by level."""
    found: dict[float, str] = {}
    for column in columns:
        if not column.startswith("q") or "_" not in column:
            continue
        # The level never contains "_", so everything after the first "_" is the property.
        token, _, rest = column[1:].partition("_")
        if rest != prop:
            continue
        try:
            level = float(token)
        except ValueError:
            continue
        if 0.0 < level < 1.0:
            found[level] = column
    return found


def property_ranges(criteria: list[CriterionSpec]) -> dict[str, tuple[float, float]]:
    """The allowed range of every property the criteria name, criteria on one property
    intersected; an open end is ``-inf`` or ``inf``."""
    ranges: dict[str, tuple[float, float]] = {}
    for criterion in criteria:
        low, high = ranges.get(criterion.property, (-math.inf, math.inf))
        if criterion.min is not None:
            low = max(low, criterion.min)
        if criterion.max is not None:
            high = min(high, criterion.max)
        ranges[criterion.property] = (low, high)
    return ranges


def _level_of(interval_level: float | Mapping[str, float] | None, prop: str) -> float:
    level = interval_level.get(prop) if isinstance(interval_level, Mapping) else interval_level
    if level is None:
        raise RankingError(
            f"ranking: {lower_column(prop)}/{upper_column(prop)} are given but not the "
            f"coverage level of the {prop} intervals"
        )
    if not 0.0 < level < 1.0:
        raise RankingError(f"ranking: interval level of {prop} must be in (0, 1), got {level}")
    return float(level)


def _column(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column].to_numpy(dtype=float)
    bad = np.isnan(values)
    if bad.any():
        ids = list(frame["id"].to_numpy()[bad][:5])
        raise RankingError(f"ranking: {column} is missing for {int(bad.sum())} candidates: {ids}")
    return values


def _refuse(frame: pd.DataFrame, bad: np.ndarray, what: str) -> None:
    if bad.any():
        ids = list(frame["id"].to_numpy()[bad][:5])
        raise RankingError(f"ranking: {what} for {int(bad.sum())} candidates: {ids}")


def _split_gaussian_cdf(
    bound: float, median: np.ndarray, below: np.ndarray, above: np.ndarray, left: bool
) -> np.ndarray:
    """P(Y <= bound) (or P(Y < bound) when ``left``) for a two-sided Gaussian.

    ``below`` and ``above`` are the spreads of the two sides of the median; a spread of
    zero is a point mass, where the left limit and the value of the CDF differ.
    """
    if math.isinf(bound):
        return np.full(len(median), 1.0 if bound > 0 else 0.0)
    distance = bound - median
    spread = np.where(distance < 0, below, above)
    at_mass = -np.inf if left else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(
            spread > 0,
            distance / np.where(spread > 0, spread, 1.0),
            np.where(distance > 0, np.inf, np.where(distance < 0, -np.inf, at_mass)),
        )
    return ndtr(z)


def _quantile_cdf(bound: float, values: np.ndarray, levels: np.ndarray, left: bool) -> np.ndarray:
    """P(Y <= bound) (or P(Y < bound) when ``left``) for a piecewise-linear CDF.

    ``values`` holds one row of sorted quantile values per candidate, ``levels`` the
    matching sorted levels. Tied values are a jump of the CDF, hence the left limit.
    """
    n, k = values.shape
    if math.isinf(bound):
        return np.full(n, 1.0 if bound > 0 else 0.0)
    rows = np.arange(n)
    # j: how many quantiles lie at or below the bound (strictly below for the left limit).
    j = (values < bound).sum(axis=1) if left else (values <= bound).sum(axis=1)
    inside = (j > 0) & (j < k)
    lo = np.clip(j - 1, 0, k - 1)
    hi = np.clip(j, 0, k - 1)
    width = values[rows, hi] - values[rows, lo]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(width > 0, (bound - values[rows, lo]) / width, 0.0)
    cdf = np.where(inside, levels[lo] + fraction * (levels[hi] - levels[lo]), 0.0)

    # Tails: continue with the slope of the segment next to the outermost quantile.
    first_above = (values <= values[:, :1]).sum(axis=1)  # first value above the lowest
    last_below = k - 1 - (values >= values[:, -1:]).sum(axis=1)  # last value below the top
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.clip(first_above, 1, k - 1)
        slope_low = np.where(
            first_above < k,
            (levels[a] - levels[a - 1]) / (values[rows, a] - values[:, 0]),
            np.inf,
        )
        b = np.clip(last_below, 0, k - 2)
        slope_high = np.where(
            last_below >= 0,
            (levels[b + 1] - levels[b]) / (values[:, -1] - values[rows, b]),
            np.inf,
        )
        below_tail = np.where(
            np.isinf(slope_low), 0.0, levels[0] - (values[:, 0] - bound) * slope_low
        )
        above_tail = np.where(
            np.isinf(slope_high), 1.0, levels[-1] + (bound - values[:, -1]) * slope_high
        )
    cdf = np.where(j == 0, np.maximum(below_tail, 0.0), cdf)
    cdf = np.where(j == k, np.minimum(above_tail, 1.0), cdf)
    return cdf


def _interval_spreads(
    frame: pd.DataFrame,
    prop: str,
    median: np.ndarray,
    level: float,
    columns: tuple[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    low_name, high_name = columns or (lower_column(prop), upper_column(prop))
    lower = frame[low_name].to_numpy(dtype=float)
    upper = frame[high_name].to_numpy(dtype=float)
    _refuse(frame, np.isnan(lower) | np.isnan(upper), f"the {prop} interval is missing")
    # A tiny tolerance: an interval computed as pred ± w and stored in float32 may miss
    # its own centre by a rounding error.
    slack = 1e-9 * np.maximum(1.0, np.abs(median))
    _refuse(
        frame,
        (lower > median + slack) | (upper < median - slack),
        f"the {prop} prediction lies outside its interval",
    )
    z = float(ndtri((1.0 + level) / 2.0))
    return np.maximum(median - lower, 0.0) / z, np.maximum(upper - median, 0.0) / z


def _property_probability(
    frame: pd.DataFrame,
    prop: str,
    low: float,
    high: float,
    interval_level: float | Mapping[str, float] | None,
) -> np.ndarray:
    columns = list(frame.columns)
    quantiles = quantile_columns(columns, prop)
    hurdle = hurdle_columns(prop)["probability"] in columns
    forms = [
        name
        for name, present in (
            ("hurdle", hurdle),
            (
                "interval",
                not hurdle and (lower_column(prop) in columns or upper_column(prop) in columns),
            ),
            ("standard deviation", std_column(prop) in columns),
            ("quantiles", bool(quantiles)),
            ("probability of 1", class_probability_column(prop) in columns),
        )
        if present
    ]
    if not forms:
        raise RankingError(
            f"ranking: no uncertainty for {prop!r}; give {lower_column(prop)} and "
            f"{upper_column(prop)} with their level, {std_column(prop)}, quantile "
            f"columns such as {quantile_column(prop, 0.05)}, {class_probability_column(prop)}, "
            f"or the hurdle columns {sorted(hurdle_columns(prop).values())}"
        )
    if len(forms) > 1:
        raise RankingError(f"ranking: {prop!r} has more than one form of uncertainty: {forms}")
    if low > high:  # criteria on one property that no value can meet together
        return np.zeros(len(frame))

    if forms[0] == "hurdle":
        return _hurdle_probability(frame, prop, low, high, _level_of(interval_level, prop))

    if forms[0] == "probability of 1":
        column = class_probability_column(prop)
        one = _column(frame, column)
        _refuse(frame, (one < 0) | (one > 1), f"{column} is outside [0, 1]")
        return one * float(low <= 1 <= high) + (1 - one) * float(low <= 0 <= high)

    if forms[0] == "quantiles":
        levels = np.array(sorted(quantiles))
        if len(levels) < 2:
            raise RankingError(f"ranking: {prop!r} needs at least two quantile levels")
        values = np.column_stack([_column(frame, quantiles[level]) for level in levels])
        values = np.sort(values, axis=1)
        p = _quantile_cdf(high, values, levels, left=False)
        p -= _quantile_cdf(low, values, levels, left=True)
        return np.clip(p, 0.0, 1.0)

    if prediction_column(prop) not in columns:
        raise RankingError(f"ranking: no predictions for {prop!r} ({prediction_column(prop)})")
    median = _column(frame, prediction_column(prop))
    if forms[0] == "interval":
        missing = [c for c in (lower_column(prop), upper_column(prop)) if c not in columns]
        if missing:
            raise RankingError(f"ranking: {prop!r} interval lacks the column {missing[0]}")
        level = _level_of(interval_level, prop)
        below, above = _interval_spreads(frame, prop, median, level)
    else:
        below = above = _column(frame, std_column(prop))
        _refuse(frame, below < 0, f"{std_column(prop)} is negative")
    p = _split_gaussian_cdf(high, median, below, above, left=False)
    p -= _split_gaussian_cdf(low, median, below, above, left=True)
    return np.clip(p, 0.0, 1.0)


def _hurdle_probability(
    frame: pd.DataFrame, prop: str, low: float, high: float, level: float
) -> np.ndarray:
    """P(value in [low, high]) of the hurdle form (see the module documentation)."""
    names = hurdle_columns(prop)
    missing = [c for c in names.values() if c not in frame.columns]
    if missing:
        raise RankingError(f"ranking: {prop!r} hurdle form lacks the columns {missing}")
    p = _column(frame, names["probability"])
    _refuse(frame, (p < 0) | (p > 1), f"{names['probability']} is outside [0, 1]")
    metal = _column(frame, names["metal_value"])
    median = _column(frame, names["pred"])
    below, above = _interval_spreads(frame, prop, median, level, (names["lower"], names["upper"]))
    conditional = _split_gaussian_cdf(high, median, below, above, left=False)
    conditional -= _split_gaussian_cdf(low, median, below, above, left=True)
    at_metal = ((metal >= low) & (metal <= high)).astype(float)
    return np.clip((1 - p) * at_metal + p * np.clip(conditional, 0.0, 1.0), 0.0, 1.0)


def success_probability(
    candidates: pd.DataFrame,
    criteria: list[CriterionSpec],
    interval_level: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Probability of each candidate meeting each criterion, and every criterion at once.

    Parameters
    ----------
    candidates
        One row per candidate: ``id``, ``pred_<property>`` and, for every property the
        criteria name, one form of uncertainty (see the module documentation).
    criteria
        The campaign's criteria; criteria on one property are intersected.
    interval_level
        Coverage level of the ``lower_``/``upper_`` intervals (and of the conditional
        ``cond_lower_``/``cond_upper_`` intervals of the hurdle form): one level for every
        property, or one per property. Needed only for properties given as intervals or
        hurdles.

    Returns
    -------
    pandas.DataFrame
        A copy of ``candidates`` with ``p_<property>`` (the probability of meeting that
        property's range) for every property the criteria name, and ``p_success``, their
        product (independence across properties assumed). Row order is kept.

    Raises
    ------
    RankingError
        If a property lacks predictions or uncertainty, has several forms of it, lacks
        an interval level, or a candidate's uncertainty is missing, negative or does not
        contain its prediction; the message names the column and the candidates.
    """
    scored = candidates.copy()
    success = np.ones(len(scored))
    for prop, (low, high) in property_ranges(criteria).items():
        p = _property_probability(scored, prop, low, high, interval_level)
        scored[probability_column(prop)] = p
        success *= p
    scored[SUCCESS_COLUMN] = success
    return scored


def expected_funnel(scored: pd.DataFrame, criteria: list[CriterionSpec]) -> list[tuple[str, float]]:
    """Expected number of candidates meeting each property's range, then every one.

    The expected count is the sum of the probabilities, so it can be set next to the
    count of point predictions inside the ranges.

    Parameters
    ----------
    scored
        Output of :func:`success_probability` (or a ranking that carries its columns).
    criteria
        The criteria the probabilities were computed for.

    Raises
    ------
    RankingError
        If a probability column is missing.
    """
    rows = []
    for prop in property_ranges(criteria):
        column = probability_column(prop)
        if column not in scored.columns:
            raise RankingError(f"funnel: no probabilities for {prop!r} ({column})")
        rows.append((prop, float(scored[column].sum())))
    if SUCCESS_COLUMN not in scored.columns:
        raise RankingError(f"funnel: no {SUCCESS_COLUMN} column")
    rows.append(("every criterion", float(scored[SUCCESS_COLUMN].sum())))
    return rows
