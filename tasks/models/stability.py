"""Thermodynamic stability from predicted formation energies: distance to the convex hull.

A candidate's energy above the hull is its formation energy per atom minus that of the
convex hull of the known phases of its chemical system (pymatgen's ``PhaseDiagram``) at its
composition: positive above the hull (unstable by that much), zero on it, negative below it
(the candidate would be a new stable phase). The known phases are a
:class:`~matscreen.tasks.models.references.ReferencePhases`: elemental references, training
records, entry files and Materials Project phases, all as formation energies measured from
the elemental references, so the diagram is built on that scale with the elements at zero.

The hull of the known phases does not move with the candidate, so a prediction interval
``[lower, upper]`` of the formation energy is one of the hull distance,
``[lower - hull, upper - hull]``. The phases the hull is made of at the candidate's
composition (its decomposition, as ``PhaseDiagram.get_decomposition`` gives it) are the
phases the candidate competes with; a candidate whose composition is that of a known phase
(a polymorph) competes with that phase. A phase holding the candidate's own record (same
id) is left out of the hull that candidate is measured against.

Scaling: candidates are grouped by chemical system and one diagram is built per system
(kept in the :class:`ReferencePhases` for later chunks); locating every candidate of a
system on its hull's facets is one vectorized computation of barycentric coordinates, in
the facet order and with the tolerances pymatgen uses, so the results equal
``PhaseDiagram.get_decomp_and_e_above_hull(entry, allow_negative=True)``.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.hull import Hull, PhaseIndex, locate, phase_index, system_hull
from matscreen.tasks.models.references import (
    Phase,
    ReferencePhases,
    element_phases,
    load_reference_entries,
    quiet_pymatgen,
    reference_phases,
)

# The phases' assembly lives in references.py; its entry points are importable from here too.
__all__ = [
    "HULL_COLUMNS",
    "Phase",
    "ReferencePhases",
    "hull_distances",
    "hull_formation_energies",
    "hull_stability",
    "load_reference_entries",
    "reference_phases",
]


#: Columns of the table :func:`hull_stability` returns, in order.
HULL_COLUMNS = (
    "id",
    "pred_energy_above_hull",
    "lower_energy_above_hull",
    "upper_energy_above_hull",
    "hull_energy_per_atom",
    "competing_phases",
    "competing_origins",
    "competing_fractions",
)

#: The columns of competing phases' texts: few distinct values across a screen's candidates.
COMPETING_COLUMNS = HULL_COLUMNS[-3:]


def shared_texts(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each competing-phase text held once in this process (interned): a
    screen's table holds a row per candidate, chunk after chunk, but few distinct texts."""
    return table.assign(
        **{
            column: [sys.intern(t) if isinstance(t, str) else t for t in table[column]]
            for column in COMPETING_COLUMNS
            if column in table
        }
    )


#: Decomposition amounts at or below this are no part of it (``PhaseDiagram.numerical_tol``).
AMOUNT_TOLERANCE = 1e-8


#: Separator of the phases, origins and fractions in the competing-phase columns.
JOIN = " + "


def hull_stability(
    candidates: Iterable[tuple[str, str, float, float, float]],
    phases: ReferencePhases,
    per_cell_atoms: Mapping[str, int] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Energy above the hull of the known phases, its interval and the competing phases.

    Parameters
    ----------
    candidates
        ``(id, formula, predicted formation energy, lower, upper)``: per atom, or per cell
        of the candidate's structure when ``per_cell_atoms`` is given. ``lower`` and
        ``upper`` may be NaN (no interval), which the table keeps.
    phases
        The known phases (:func:`~matscreen.tasks.models.references.reference_phases`);
        the hulls built are kept in it for later calls.
    per_cell_atoms
        Number of atoms of each candidate's cell (by id): the energies are per cell and
        are divided by it. None: the energies are per atom.

    Returns
    -------
    tuple
        A table with the :data:`HULL_COLUMNS`, one row per candidate with a value, in input
        order: ``id``, ``pred_energy_above_hull``, ``lower_energy_above_hull``,
        ``upper_energy_above_hull`` and ``hull_energy_per_atom`` (eV/atom);
        ``competing_phases`` (``"SrO + TiO2"``, reduced formulas by rising
        electronegativity), ``competing_origins`` (``"training:cmr:7 + mp:mp-2657"``) and
        ``competing_fractions`` (the atomic fraction of the candidate each phase takes), in
        the same order. And ``{id: reason}`` for each candidate without a value (an element
        without a reference, a formula that cannot be read, no finite prediction, no atom
        count).

    Raises
    ------
    ModelError
        If two candidates share an id, or a phase of ``phases`` has an unreadable formula or
        no finite formation energy.
    """
    index = phase_index(phases)
    accepted, failures = _accept(candidates, phases.elements, per_cell_atoms)
    groups: dict[tuple[tuple[str, ...], frozenset[int]], list[int]] = defaultdict(list)
    for row, candidate in enumerate(accepted):
        own = frozenset(index.own_phases(candidate.id, set(candidate.system)))
        groups[(candidate.system, own)].append(row)
    measured: dict[int, tuple[float, tuple[str, str, str]]] = {}
    for (system, own), members in groups.items():
        try:
            hull = system_hull(phases, index, system, own)
        except (ValueError, RuntimeError) as exc:  # qhull's errors are RuntimeErrors
            for row in members:
                failures[accepted[row].id] = (
                    f"{accepted[row].formula}: the hull of {'-'.join(system)} cannot be built "
                    f"({exc})"
                )
            continue
        results = _measure(hull, index, [accepted[row] for row in members])
        for row, result in zip(members, results, strict=True):
            if isinstance(result, str):
                failures[accepted[row].id] = f"{accepted[row].formula}: {result}"
            else:
                measured[row] = result
    return _table([(accepted[row], *measured[row]) for row in sorted(measured)]), failures


@dataclass(frozen=True)
class _Candidate:
    """A candidate that has a hull: its system, atomic fractions and energies per atom."""

    id: str
    formula: str
    system: tuple[str, ...]
    fractions: tuple[float, ...]
    energy: float
    lower: float
    upper: float


def _accept(
    candidates: Iterable[tuple[str, str, float, float, float]],
    elements: Mapping[str, float],
    per_cell_atoms: Mapping[str, int] | None,
) -> tuple[list[_Candidate], dict[str, str]]:
    """The candidates that can have a hull, and why each of the others cannot."""
    accepted: list[_Candidate] = []
    failures: dict[str, str] = {}
    parsed: dict[str, tuple[tuple[str, ...], tuple[float, ...]] | str] = {}
    seen: set[str] = set()
    for record_id, formula, energy, lower, upper in candidates:
        record_id = str(record_id)
        if record_id in seen:
            raise ModelError(f"candidate id {record_id} appears twice")
        seen.add(record_id)
        if formula not in parsed:
            parsed[formula] = _parse(formula, elements)
        found = parsed[formula]
        if isinstance(found, str):
            failures[record_id] = found
            continue
        values, problem = _per_atom_values(record_id, (energy, lower, upper), per_cell_atoms)
        if problem is not None:
            failures[record_id] = f"{formula}: {problem}"
            continue
        accepted.append(_Candidate(record_id, str(formula), *found, *values))
    return accepted, failures


def _measure(
    hull: Hull, index: PhaseIndex, candidates: list[_Candidate]
) -> list[tuple[float, tuple[str, str, str]] | str]:
    """Hull energy and competing phases of each candidate of one system, or why none."""
    fractions = np.array([candidate.fractions for candidate in candidates], dtype=float)
    located, facets, amounts = locate(hull, fractions)
    amounts = np.where(np.abs(amounts) > AMOUNT_TOLERANCE, amounts, 0.0)
    energies = (amounts * hull.energies[facets]).sum(axis=1)
    names: dict[tuple[int, tuple[bool, ...]], tuple[str, str, list[int]]] = {}
    results: list[tuple[float, tuple[str, str, str]] | str] = []
    for position in range(len(candidates)):
        if not located[position]:
            results.append(f"no facet of the {'-'.join(hull.elements)} hull holds it")
            continue
        described = _describe(hull, index, facets[position], amounts[position], names)
        results.append((float(energies[position]), described))
    return results


def _table(rows: list[tuple[_Candidate, float, tuple[str, str, str]]]) -> pd.DataFrame:
    """The result table of measured candidates, in input order."""
    energy = np.array([c.energy for c, _, _ in rows], dtype=float)
    lower = np.array([c.lower for c, _, _ in rows], dtype=float)
    upper = np.array([c.upper for c, _, _ in rows], dtype=float)
    hull = np.array([h for _, h, _ in rows], dtype=float)
    return pd.DataFrame(
        {
            "id": [c.id for c, _, _ in rows],
            "pred_energy_above_hull": energy - hull,
            "lower_energy_above_hull": lower - hull,
            "upper_energy_above_hull": upper - hull,
            "hull_energy_per_atom": hull,
            "competing_phases": [d[0] for _, _, d in rows],
            "competing_origins": [d[1] for _, _, d in rows],
            "competing_fractions": [d[2] for _, _, d in rows],
        },
        columns=list(HULL_COLUMNS),
    )


def hull_distances(
    candidates: Iterable[tuple[str, str, float]],
    references: dict[str, Any],
    known: Iterable[tuple[str, float]] = (),
) -> dict[str, float]:
    """Signed distance of each candidate to the hull of the known phases (eV/atom).

    Parameters
    ----------
    candidates
        ``(id, formula, formation energy per atom)``, e.g. predicted formation energies.
    references
        Elemental reference entries (:func:`load_reference_entries`).
    known
        ``(formula, formation energy per atom)`` of known phases (training labels).

    Returns
    -------
    dict
        ``{id: distance}``: positive above the hull (unstable by that much), zero on it,
        negative below it (the candidate would be a new stable phase).

    Raises
    ------
    ModelError
        If a formula holds an element without a reference entry, or cannot be read.
    """
    rows = [(i, f, e, e, e) for i, f, e in candidates]
    table = _strict(hull_stability(rows, _known_phases(references, known)))
    return dict(zip(table["id"], table["pred_energy_above_hull"].astype(float), strict=True))


def hull_formation_energies(
    candidates: Iterable[tuple[str, str]],
    references: dict[str, Any],
    known: Iterable[tuple[str, float]] = (),
) -> dict[str, float]:
    """Formation energy per atom of the known phases' hull at each candidate's composition.

    A candidate with formation energy ``e`` lies ``e - hull`` above the hull, so a
    prediction interval ``[lower, upper]`` of ``e`` is one of the hull distance,
    ``[lower - hull, upper - hull]``: the hull of the known phases does not move with the
    candidate.

    Parameters
    ----------
    candidates
        ``(id, formula)`` of the candidates.
    references, known
        As for :func:`hull_distances`.

    Raises
    ------
    ModelError
        If a formula holds an element without a reference entry, or cannot be read.
    """
    rows = [(i, f, 0.0, 0.0, 0.0) for i, f in candidates]
    table = _strict(hull_stability(rows, _known_phases(references, known)))
    return dict(zip(table["id"], table["hull_energy_per_atom"].astype(float), strict=True))


def _describe(
    hull: Hull,
    index: PhaseIndex,
    facet: int,
    amounts: np.ndarray,
    names: dict[tuple[int, tuple[bool, ...]], tuple[str, str, list[int]]],
) -> tuple[str, str, str]:
    """Competing phases, their origins and their fractions, by rising electronegativity."""
    used = tuple(bool(a) for a in amounts)
    key = (int(facet), used)
    if key not in names:
        vertices = [v for v in range(len(used)) if used[v]]
        vertices.sort(key=lambda v: index.order[hull.owners[facet, v]])
        owners = [int(hull.owners[facet, v]) for v in vertices]
        names[key] = (
            JOIN.join(index.names[i] for i in owners),
            JOIN.join(index.origins[i] for i in owners),
            vertices,
        )
    phases, origins, vertices = names[key]
    return phases, origins, JOIN.join(f"{amounts[v]:.4g}" for v in vertices)


# --- candidates ----------------------------------------------------------------------------


def _parse(
    formula: Any, elements: Mapping[str, float]
) -> tuple[tuple[str, ...], tuple[float, ...]] | str:
    """A formula's chemical system and atomic fractions, or why it has no hull."""
    from pymatgen.core import Composition

    try:
        with quiet_pymatgen():
            composition = Composition(formula)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"formula {formula!r} cannot be read ({exc})"
    amounts = composition.get_el_amt_dict()
    total = sum(amounts.values())
    if total <= 0 or any(amount < 0 for amount in amounts.values()):
        return f"formula {formula!r} has no atoms"
    system = tuple(sorted(amounts))
    missing = [symbol for symbol in system if symbol not in elements]
    if missing:
        return f"{formula}: no elemental reference entry for {missing}"
    return system, tuple(amounts[symbol] / total for symbol in system)


def _per_atom_values(
    record_id: str, values: tuple[Any, Any, Any], atoms: Mapping[str, int] | None
) -> tuple[tuple[float, float, float], str | None]:
    """Prediction, lower and upper per atom, or why there are none."""
    numbers = []
    for name, value in zip(("prediction", "lower", "upper"), values, strict=True):
        try:
            numbers.append(math.nan if value is None else float(value))
        except (TypeError, ValueError):
            return (math.nan,) * 3, f"{name} {value!r} is not a number"
    if not math.isfinite(numbers[0]):
        return (math.nan,) * 3, f"predicted formation energy is {numbers[0]}"
    if atoms is not None:
        count = atoms.get(record_id)
        if isinstance(count, bool) or not isinstance(count, int | float) or not count > 0:
            return (math.nan,) * 3, f"no atom count of {record_id} for a per-cell energy"
        numbers = [number / count for number in numbers]
    return (numbers[0], numbers[1], numbers[2]), None


# --- the legacy entry points -----------------------------------------------------------------


def _known_phases(
    references: dict[str, Any], known: Iterable[tuple[str, float]]
) -> ReferencePhases:
    elements = {str(symbol): float(entry.energy_per_atom) for symbol, entry in references.items()}
    phases = element_phases(elements)
    phases += [Phase(str(formula), float(energy), "known") for formula, energy in known]
    return ReferencePhases(elements, tuple(phases))


def _strict(result: tuple[pd.DataFrame, dict[str, str]]) -> pd.DataFrame:
    table, failures = result
    if failures:
        raise ModelError(next(iter(failures.values())))
    return table
