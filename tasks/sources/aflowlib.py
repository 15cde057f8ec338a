"""AFLOW's aflowlib entries (``aflowlib.json`` / ``aflowlib.out``) read into structures.

An aflowlib entry describes one relaxed calculation with about 140 keywords. The structure is
rebuilt from three of them:

``geometry``
    the relaxed cell as ``a, b, c, alpha, beta, gamma`` (Å, degrees);
``positions_fractional``
    one fractional ``x, y, z`` per atom;
``species`` and ``composition``
    the elements in alphabetical order and the number of atoms of each. AFLOW writes the
    atoms grouped by element in that same order, so ``species[i]`` repeated
    ``composition[i]`` times gives the element of every position. (``stoichiometry`` holds
    only rounded fractions; ``compound``, e.g. ``Ac2Br6``, holds the same counts as text and is
    used when ``composition`` is absent, and checked against it otherwise.)

``Egap`` becomes ``band_gap`` (eV) and ``enthalpy_formation_atom`` becomes
``formation_energy_per_atom`` (eV/atom).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from matscreen.tasks.errors import RecordError
from matscreen.tasks.sources.properties import as_number
from matscreen.tasks.spec import AFLOW_PROPERTIES

#: Entry keywords kept in a record's ``extra`` when the entry has them.
EXTRA_KEYWORDS: tuple[str, ...] = (
    "auid",
    "aurl",
    "compound",
    "catalog",
    "spacegroup_relax",
    "Egap_type",
    "aflowlib_version",
    "aflowlib_date",
)


# How aflowlib.out text maps onto the JSON shapes of aflowlib.json. The text format writes a
# list as "a,b,c" and a list of rows as "a,b;c,d", which loses the difference between one
# value and a list of one value; these tables restore it for the keywords where the JSON
# twins show that a list is meant.

#: Keywords whose value is a list even when it holds a single item.
_LIST_KEYWORDS = frozenset(
    {
        "aflow_prototype_parameter_list_orig",
        "aflow_prototype_parameter_list_relax",
        "aflow_prototype_parameter_values_orig",
        "aflow_prototype_parameter_values_relax",
        "anrl_parameter_list_orig",
        "anrl_parameter_list_relax",
        "anrl_parameter_values_orig",
        "anrl_parameter_values_relax",
        "bader_atomic_volumes",
        "bader_net_charges",
        "composition",
        "dft_type",
        "files",
        "geometry",
        "geometry_orig",
        "kpoints_bands_path",
        "kpoints_relax",
        "kpoints_static",
        "ldau_j",
        "ldau_l",
        "ldau_u",
        "loop",
        "nbondxx",
        "reciprocal_geometry",
        "reciprocal_geometry_orig",
        "sg",
        "sg2",
        "species",
        "species_pp",
        "species_pp_AUID",
        "species_pp_version",
        "species_pp_ZVAL",
        "spinD",
        "stoich",
        "stoichiometry",
        "stress_tensor",
    }
)


#: Keywords holding one row per atom, Wyckoff orbit or tensor row ("x,y,z;x,y,z").
_ROW_KEYWORDS = frozenset(
    {
        "ael_compliance_tensor",
        "ael_stiffness_tensor",
        "forces",
        "positions_cartesian",
        "positions_fractional",
        "Wyckoff_letters",
        "Wyckoff_letters_orig",
        "Wyckoff_multiplicities",
        "Wyckoff_multiplicities_orig",
        "Wyckoff_site_symmetries",
        "Wyckoff_site_symmetries_orig",
    }
)


#: Keywords whose ";"-separated parts are each a list or one value, e.g. ``kpoints``:
#: relaxation grid; static grid; band path; points per segment.
_PART_KEYWORDS = frozenset({"kpoints", "ldau_TLUJ"})


#: Keywords that are text even when they read as a number (the LIB2 prototype "17", site
#: symmetry "2", point group "1", an AUID of hexadecimal digits).
_TEXT_KEYWORDS = frozenset(
    {
        "auid",
        "aurl",
        "catalog",
        "code",
        "compound",
        "data_api",
        "data_source",
        "Egap_type",
        "point_group_Hermann_Mauguin",
        "point_group_Hermann_Mauguin_orig",
        "point_group_orbifold",
        "point_group_orbifold_orig",
        "prototype",
        "species_pp_AUID",
        "title",
        "Wyckoff_site_symmetries",
        "Wyckoff_site_symmetries_orig",
    }
)


#: The legacy ``stoich`` keyword separates its values by spaces, not commas.
_SPACE_LIST_KEYWORDS = frozenset({"stoich"})


_INTEGER = re.compile(r"[+-]?\d+")


_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


_FIELD_SEPARATOR = re.compile(r"\s*\|\s*")


_FORMULA_TERM = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


# ---------------------------------------------------------------------------------------
# aflowlib.out text


def _token(keyword: str, text: str) -> Any:
    """One value of the text format: int, float or text."""
    text = text.strip()
    if keyword in _TEXT_KEYWORDS:
        return text
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _items(keyword: str, text: str) -> list[Any]:
    return [_token(keyword, item) for item in text.split(",")]


def parse_aflowlib_value(keyword: str, text: str) -> Any:
    """Turn one aflowlib.out value into the JSON value aflowlib.json gives the keyword.

    ``"2,6"`` becomes ``[2, 6]``, ``"0,0,0;0.5,0.5,0.5"`` a list of rows, ``"4.1084"`` a
    float; the keyword decides between a single value and a list of one item.
    """
    text = text.strip()
    if keyword in _ROW_KEYWORDS:
        return [_items(keyword, row) for row in text.split(";")]
    if keyword in _PART_KEYWORDS or ";" in text:
        return [
            _items(keyword, part) if "," in part else _token(keyword, part)
            for part in text.split(";")
        ]
    if keyword in _SPACE_LIST_KEYWORDS and "," not in text:
        return [_token(keyword, item) for item in text.split()]
    if keyword in _LIST_KEYWORDS or "," in text:
        return _items(keyword, text)
    return _token(keyword, text)


def parse_aflowlib_out(text: str, where: str = "aflowlib.out") -> dict[str, Any]:
    """Parse aflowlib.out text (``key=value | key=value …``) into the aflowlib.json dict.

    Numbers become int or float, comma-separated values lists, ``;``-separated rows lists of
    lists (``positions_fractional``, ``forces``, Wyckoff data), as in aflowlib.json. Keywords
    written with an empty value are left out, as aflowlib.json leaves them out.

    Parameters
    ----------
    text
        The file's text.
    where
        Names the file in error messages.

    Raises
    ------
    RecordError
        If the text is empty, a field is not ``key=value`` or a keyword appears twice.
    """
    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"{where}: empty aflowlib.out text")
    entry: dict[str, Any] = {}
    for number, field in enumerate(_FIELD_SEPARATOR.split(text.strip()), start=1):
        keyword, separator, value = field.partition("=")
        keyword = keyword.strip()
        if not separator or not KEYWORD.fullmatch(keyword):
            raise RecordError(f"{where}: field {number} ({field[:60]!r}) is not keyword=value")
        if keyword in entry:
            raise RecordError(f"{where}: keyword {keyword!r} appears twice")
        if value.strip():
            entry[keyword] = parse_aflowlib_value(keyword, value)
    return entry


# ---------------------------------------------------------------------------------------
# aflowlib entry -> structure, properties, metadata


def _entry_name(entry: Mapping[str, Any], where: str | None) -> str:
    identity = entry.get("auid") or entry.get("aurl") or "aflowlib entry without auid"
    return f"{identity} ({where})" if where else str(identity)


def _value(entry: Mapping[str, Any], keyword: str) -> Any:
    """An entry's value; text (AFLUX may answer numbers and lists as text) read as in .out."""
    value = entry.get(keyword)
    if isinstance(value, str) and keyword not in _TEXT_KEYWORDS:
        return parse_aflowlib_value(keyword, value) if value.strip() else None
    return value


def _finite(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


def _required(entry: Mapping[str, Any], keyword: str, name: str) -> Any:
    value = _value(entry, keyword)
    if value is None or value == []:
        present = ", ".join(sorted(entry)[:12]) + (" …" if len(entry) > 12 else "")
        raise RecordError(
            f"{name}: no {keyword!r} keyword, so no structure can be built "
            f"(the entry has: {present or 'nothing'})"
        )
    return value


def _lattice(entry: Mapping[str, Any], name: str) -> Lattice:
    geometry = _required(entry, "geometry", name)
    try:
        a, b, c, alpha, beta, gamma = (_finite(v) for v in geometry)
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"{name}: geometry must be six numbers a, b, c, alpha, beta, gamma, not {geometry!r}"
        ) from exc
    if min(a, b, c) <= 0 or not all(0 < angle < 180 for angle in (alpha, beta, gamma)):
        raise RecordError(f"{name}: geometry {geometry!r} is not a cell")
    cosines = [math.cos(math.radians(angle)) for angle in (alpha, beta, gamma)]
    # The squared volume factor; pymatgen would silently clip impossible angle sets.
    radicand = 1 - sum(x * x for x in cosines) + 2 * cosines[0] * cosines[1] * cosines[2]
    if radicand <= 1e-10:
        raise RecordError(f"{name}: the angles of geometry {geometry!r} do not span a cell")
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


def _formula_counts(compound: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    position = 0
    for match in _FORMULA_TERM.finditer(compound):
        if match.start() != position:
            break
        counts[match.group(1)] = counts.get(match.group(1), 0) + float(match.group(2) or 1)
        position = match.end()
    if position != len(compound) or not counts:
        raise ValueError(f"unreadable compound {compound!r}")
    return counts


def _site_species(entry: Mapping[str, Any], name: str) -> list[str]:
    """The element of every position: ``species[i]`` repeated ``composition[i]`` times."""
    species = _required(entry, "species", name)
    if isinstance(species, str):
        species = [species]
    if not isinstance(species, list) or not all(isinstance(s, str) for s in species):
        raise RecordError(f"{name}: species must be a list of element symbols, not {species!r}")
    for symbol in species:
        if not Element.is_valid_symbol(symbol):
            raise RecordError(f"{name}: species holds {symbol!r}, which is not an element")
    compound = entry.get("compound")
    try:
        compound_counts = _formula_counts(compound) if isinstance(compound, str) else None
    except ValueError as exc:
        raise RecordError(f"{name}: {exc}") from exc
    composition = _value(entry, "composition")
    if composition is None:
        if compound_counts is None:
            raise RecordError(f"{name}: neither composition nor compound gives the atom counts")
        composition = [compound_counts.get(symbol, 0) for symbol in species]
    if isinstance(composition, int | float):
        composition = [composition]
    try:
        counts = [_finite(n) for n in composition]
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{name}: composition {composition!r} is not a list of counts") from exc
    if len(counts) != len(species) or any(n < 1 or n != int(n) for n in counts):
        raise RecordError(
            f"{name}: composition {composition!r} does not give a whole number of atoms "
            f"for each of the species {species}"
        )
    if compound_counts is not None and compound_counts != dict(zip(species, counts, strict=True)):
        raise RecordError(
            f"{name}: composition {composition!r} of species {species} disagrees with "
            f"compound {compound!r}"
        )
    return [symbol for symbol, n in zip(species, counts, strict=True) for _ in range(int(n))]


def _positions(entry: Mapping[str, Any], name: str) -> np.ndarray:
    positions = _required(entry, "positions_fractional", name)
    if not isinstance(positions, list):
        raise RecordError(f"{name}: positions_fractional is not a list but {positions!r:.80}")
    if not isinstance(positions[0], list):  # one atom written as a flat list
        positions = [positions]
    try:
        array = np.array([[_finite(x) for x in row] for row in positions], dtype=float)
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"{name}: positions_fractional holds a value that is not a number"
        ) from exc
    if array.ndim != 2 or array.shape[1] != 3:
        raise RecordError(f"{name}: positions_fractional must hold three coordinates per atom")
    return array


def parse_aflowlib_entry(
    entry: Mapping[str, Any], where: str | None = None
) -> tuple[Structure, dict[str, float | None], dict[str, Any]]:
    """Build the structure, properties and metadata of one aflowlib entry.

    Parameters
    ----------
    entry
        An aflowlib.json dict, the :func:`parse_aflowlib_out` dict of an aflowlib.out file, or
        one entry of an AFLUX page (whose numbers may be given as text).
    where
        The file or URL the entry came from, added to error messages.

    Returns
    -------
    structure
        The relaxed cell with one site per atom, in the entry's order.
    properties
        ``band_gap`` (eV) from ``Egap`` and ``formation_energy_per_atom`` (eV/atom) from
        ``enthalpy_formation_atom``; None where the entry has no value.
    extra
        auid, aurl, compound, catalog, spacegroup_relax, Egap_type, aflowlib_version and
        aflowlib_date, those the entry has.

    Raises
    ------
    RecordError
        If the entry lacks geometry, positions or species, or they disagree (positions
        count against ``natoms`` and ``composition``); the message names the entry's auid.
    """
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where or 'aflowlib entry'}: not a JSON object but {type(entry)}")
    name = _entry_name(entry, where)
    lattice = _lattice(entry, name)
    positions = _positions(entry, name)
    species = _site_species(entry, name)
    natoms = _value(entry, "natoms")
    if natoms is not None and natoms != len(positions):
        raise RecordError(
            f"{name}: natoms is {natoms} but positions_fractional holds {len(positions)} atoms"
        )
    if len(species) != len(positions):
        raise RecordError(
            f"{name}: composition counts {len(species)} atoms but positions_fractional "
            f"holds {len(positions)}"
        )
    structure = Structure(lattice, species, positions)
    properties: dict[str, float | None] = {}
    for keyword, prop in AFLOW_PROPERTIES.items():
        raw = entry.get(keyword)
        try:
            properties[prop] = as_number(raw)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{name}: {keyword} is not a number: {raw!r}") from exc
    extra = {
        keyword: _value(entry, keyword)
        for keyword in EXTRA_KEYWORDS
        if entry.get(keyword) not in (None, "", [])
    }
    return structure, properties, extra
