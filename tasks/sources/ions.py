"""Oxidation states and radii of the ions a decoration puts on its sites (pymatgen's tables)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pymatgen.core
from monty.serialization import loadfn
from pymatgen.core import Element, Species

from matscreen.tasks.errors import SourceError

_ROMAN = {
    "I": 1,
    "II": 2,
    "III": 3,
    "IV": 4,
    "V": 5,
    "VI": 6,
    "VII": 7,
    "VIII": 8,
    "IX": 9,
    "X": 10,
    "XI": 11,
    "XII": 12,
    "XIV": 14,
}


@cache
def icsd_occurrence() -> dict[tuple[str, int], int]:
    """How often each (element, oxidation state) occurs in the ICSD, from pymatgen's table."""
    path = Path(pymatgen.core.__file__).parent / "icsd_bv.yaml"
    if not path.is_file():
        raise SourceError(f"pymatgen's ICSD oxidation-state occurrence table is missing: {path}")
    occurrence = loadfn(path)["occurrence"]
    table: dict[tuple[str, int], int] = {}
    for name, count in occurrence.items():
        species = Species.from_str(name)
        if species.oxi_state is not None:
            table[(species.symbol, int(species.oxi_state))] = int(count)
    return table


@cache
def allowed_oxidation_states(symbol: str, sign: int) -> tuple[int, ...]:
    """Oxidation states ``symbol`` may take on a label of charge sign ``sign`` (+1, -1, 0).

    Positive states are the element's ICSD states, negative ones its common states (see
    the module docstring for why).
    """
    element = Element(symbol)
    states = {s for s in element.icsd_oxidation_states if s > 0}
    states |= {s for s in element.common_oxidation_states if s < 0}
    if sign:
        states = {s for s in states if s * sign > 0}
    return tuple(sorted(states))


def _coordination_number(key: str) -> int | None:
    return _ROMAN.get(key.removesuffix("SQ").removesuffix("PY"))


@cache
def shannon_radius(symbol: str, oxidation: int, coordination: int) -> float | None:
    """Shannon ionic radius (Å) of ``symbol`` in ``oxidation`` at the nearest tabulated
    coordination to ``coordination``; None when the ion is not tabulated."""
    table = Element(symbol).data.get("Shannon radii", {}).get(str(oxidation), {})
    options = []
    for key, spins in table.items():
        number = _coordination_number(key)
        if number is None:
            continue
        for preference, spin in enumerate(("", "High Spin", "Low Spin")):
            radius = spins.get(spin, {}).get("ionic_radius")
            # Shannon lists a few tiny ions (N5+ III) with negative radii; unusable here.
            if radius is not None and radius > 0:
                distortion = key.endswith(("SQ", "PY"))
                rank = (abs(number - coordination), -number, distortion, preference)
                options.append((rank, float(radius)))
    return min(options)[1] if options else None


@cache
def atomic_radius(symbol: str) -> float | None:
    """Pymatgen's empirical atomic radius of ``symbol`` in Å (None when not tabulated)."""
    radius = Element(symbol).atomic_radius
    return None if radius is None else float(radius)
