"""Normalized property names and units that every source reports under.

Sources translate their own field names (MP ``band_gap``, AFLOW ``Egap``, OQMD ``delta_e``,
Alexandria ``e_form`` …) into these names, so a campaign can train on records from several
sources at once. Boolean flags are stored as 1.0 / 0.0 with unit ``bool``.
"""

from __future__ import annotations

import math

from matscreen.tasks.errors import RecordError

#: normalized name -> unit
PROPERTY_UNITS: dict[str, str] = {
    "band_gap": "eV",
    "formation_energy_per_atom": "eV/atom",
    "energy_above_hull": "eV/atom",
    "energy_per_atom": "eV/atom",
    "is_metal": "bool",
    "is_stable": "bool",
    "is_gap_direct": "bool",
}


#: Largest magnitude a reported value may have: the models (xgboost) compute in 32-bit
#: floats, whose largest is about 3.4e38; no physical property is reported anywhere near.
LARGEST_VALUE = 1e30


class NotFiniteError(RecordError, ValueError):
    """A reported value is infinite (``inf``, ``-Infinity``, ``1e999``) or too large for the
    models (``1e308``): not a usable label.

    It is a :class:`ValueError` too, so callers that catch the ``ValueError`` of
    :func:`as_number` for "not a number" refuse it as well.
    """


#: How tables and JSON write "no value" (compared in lower case): the empty string, JSON's
#: null, Python's None, NaN, and the NA marks of spreadsheets, R and pandas.
MISSING = frozenset({"", "null", "none", "nan", "-nan", "na", "n/a", "#n/a", "<na>"})


def as_number(value: object) -> float | None:
    """Return a reported value as a float (booleans as 1.0/0.0), None for missing values.

    Missing is None or a string of :data:`MISSING` (empty, ``null``, ``none``, NaN,
    ``NA``, ``N/A``, ``#N/A``, ``<NA>``), in any case. Infinity (``inf``, ``-Infinity``,
    ``1e999`` …) is not missing and not a usable number: it is refused, so the record
    fails with the reason instead of being stored and silently left out of training.

    Raises
    ------
    NotFiniteError
        If the value is infinite ("inf is not a finite number") or larger in magnitude
        than :data:`LARGEST_VALUE`.
    ValueError
        If the value is neither missing, boolean nor numeric.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in MISSING:
            return None
        try:
            if "_" in text:  # Python reads "1_000" as 1000; no table or database means that
                raise ValueError(text)
            number = float(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
    if math.isnan(number):
        return None
    if math.isinf(number):
        shown = value.strip() if isinstance(value, str) else value
        raise NotFiniteError(f"{shown} is not a finite number")
    if abs(number) > LARGEST_VALUE:
        raise NotFiniteError(
            f"{number:g} is too large for a property value (the models compute in 32-bit "
            f"floats; at most {LARGEST_VALUE:g} in magnitude)"
        )
    return number
