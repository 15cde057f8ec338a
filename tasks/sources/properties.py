"""Normalized property names and units that every source reports under.

Sources translate their own field names (MP ``band_gap``, AFLOW ``Egap``, OQMD ``delta_e``,
Alexandria ``e_form`` …) into these names, so a campaign can train on records from several
sources at once. Boolean flags are stored as 1.0 / 0.0 with unit ``bool``.
"""

from __future__ import annotations

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


def as_number(value: object) -> float | None:
    """Return a reported value as a float (booleans as 1.0/0.0), None for missing values.

    Raises
    ------
    ValueError
        If the value is neither missing, boolean nor numeric.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "null", "none", "nan"):
            return None
        return float(text)
    number = float(value)  # type: ignore[arg-type]
    return None if number != number else number
