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

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from matscreen.tasks.errors import ModelError
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

#: A composition is in a facet when no barycentric coordinate is below minus this
#: (``PhaseDiagram.numerical_tol / 10``, as pymatgen's ``_get_facet_and_simplex``).
IN_FACET_TOLERANCE = 1e-9
#: pymatgen's ``PhaseDiagram.formation_energy_tol``: phases at or above the elements' plane
#: (within it) are left out of the hull.
FORMATION_ENERGY_TOL = 1e-11

#: Decomposition amounts at or below this are no part of it (``PhaseDiagram.numerical_tol``).
AMOUNT_TOLERANCE = 1e-8

#: Most barycentric coordinates (candidates x facets x elements) computed in one block.
BLOCK_SIZE = 2_000_000

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
    index = _index(phases)
    accepted, failures = _accept(candidates, phases.elements, per_cell_atoms)
    groups: dict[tuple[tuple[str, ...], frozenset[int]], list[int]] = defaultdict(list)
    for row, candidate in enumerate(accepted):
        own = frozenset(index.own_phases(candidate.id, set(candidate.system)))
        groups[(candidate.system, own)].append(row)
    measured: dict[int, tuple[float, tuple[str, str, str]]] = {}
    for (system, own), members in groups.items():
        try:
            hull = _hull(phases, index, system, own)
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
    hull: _Hull, index: _Index, candidates: list[_Candidate]
) -> list[tuple[float, tuple[str, str, str]] | str]:
    """Hull energy and competing phases of each candidate of one system, or why none."""
    fractions = np.array([candidate.fractions for candidate in candidates], dtype=float)
    located, facets, amounts = _locate(hull, fractions)
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


# --- the phases, indexed -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """The phases by element set and by record id, with their display names."""

    by_system: dict[frozenset[str], list[int]]
    by_record: dict[str, list[int]]
    elements: list[frozenset[str]]
    compositions: list[Any]
    names: list[str]
    origins: list[str]
    order: list[tuple[float, str]]
    #: Per phase: amount of each element, number of atoms, reduced amounts.
    amounts: list[dict[str, float]]
    atoms: list[float]
    reduced: list[dict[str, float]]

    def own_phases(self, record_id: str, system: set[str]) -> list[int]:
        """Phases of the system holding a candidate's own record: its id, or its source id
        (after the first ``:``), e.g. the MP material id of a candidate read from MP."""
        ids = {record_id, record_id.split(":", 1)[-1]}
        return [i for rid in ids for i in self.by_record.get(rid, ()) if self.elements[i] <= system]


def _index(phases: ReferencePhases) -> _Index:
    cached = phases.cache.get("index")
    if cached is not None:
        return cached
    from pymatgen.core import Composition

    by_system: dict[frozenset[str], list[int]] = defaultdict(list)
    by_record: dict[str, list[int]] = defaultdict(list)
    elements, compositions, names, order = [], [], [], []
    for i, phase in enumerate(phases.phases):
        try:
            with quiet_pymatgen():
                composition = Composition(phase.formula)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ModelError(f"phase {phase.origin}: formula {phase.formula!r} ({exc})") from exc
        energy = phase.formation_energy_per_atom
        if not math.isfinite(energy) or composition.num_atoms <= 0:
            raise ModelError(f"phase {phase.origin} ({phase.formula}): energy {energy}")
        symbols = frozenset(str(el) for el in composition.elements)
        by_system[symbols].append(i)
        if phase.record_id:
            by_record[phase.record_id].append(i)
        elements.append(symbols)
        compositions.append(composition)
        names.append(composition.reduced_formula)
        order.append((_electronegativity(composition), composition.reduced_formula))
    origins = [phase.origin for phase in phases.phases]
    amounts = [{str(el): float(n) for el, n in c.items()} for c in compositions]
    reduced = [{str(el): float(n) for el, n in c.reduced_composition.items()} for c in compositions]
    index = _Index(
        dict(by_system),
        dict(by_record),
        elements,
        compositions,
        names,
        origins,
        order,
        amounts,
        [float(c.num_atoms) for c in compositions],
        reduced,
    )
    phases.cache["index"] = index
    return index


def _electronegativity(composition: Any) -> float:
    """Mean Pauling electronegativity; noble gases without one count as the highest."""
    total = 0.0
    for element, fraction in composition.fractional_composition.items():
        with quiet_pymatgen():
            x = element.X
        total += fraction * (x if math.isfinite(x) else 5.0)
    return total


# --- hulls ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hull:
    """The lower hull of one chemical system, as pymatgen's PhaseDiagram finds it.

    ``inverses[f]`` turns ``[fractions of elements[1:], 1]`` into barycentric coordinates
    in facet ``f``; ``energies[f]`` and ``owners[f]`` are its vertices' formation energies
    per atom and phase indices.
    """

    elements: tuple[str, ...]
    inverses: np.ndarray
    energies: np.ndarray
    owners: np.ndarray


def _hull(
    phases: ReferencePhases, index: _Index, system: tuple[str, ...], own: frozenset[int]
) -> _Hull:
    key = ("hull", system, own)
    cached = phases.cache.get(key)
    if cached is not None:
        return cached
    members = [
        i
        for size in range(1, len(system) + 1)
        for subsystem in combinations(system, size)
        for i in index.by_system.get(frozenset(subsystem), ())
        if i not in own
    ]
    qhull_data, facets, owners = _lower_hull(phases, index, system, members)
    vertices = qhull_data[facets]
    augmented = vertices.copy()
    augmented[:, :, -1] = 1.0
    hull = _Hull(
        elements=system,
        inverses=np.linalg.inv(augmented),
        energies=vertices[:, :, -1],
        owners=owners[facets],
    )
    phases.cache[key] = hull
    return hull


def _lower_hull(
    phases: ReferencePhases, index: _Index, system: tuple[str, ...], members: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pymatgen's ``PhaseDiagram`` construction for these phases, on plain arrays.

    The same steps in the same order — entries sorted by reduced composition, energy per
    atom and name; the lowest entry of each composition; those below the elements' plane
    and the elemental references; the extra point above; qhull ("Qt i"); facets without
    the extra point and of non-zero volume — without building Composition objects (a
    tenth of the time; a test compares both on every system of a screen).

    Returns
    -------
    tuple
        ``qhull_data`` (fractions of ``system[1:]`` and energy per atom, one row per hull
        point), ``facets`` (rows of ``qhull_data`` per facet) and ``owners`` (the phase
        index of every row but the extra point).

    Raises
    ------
    ValueError
        If an element of the system has no phase.
    """
    from scipy.spatial import ConvexHull

    from matscreen.tasks.models.references import element_order

    dim = len(system)
    order = element_order(system)  # the elements as pymatgen sorts them
    rows = []
    for i in members:
        amounts = index.amounts[i]
        n_atoms = index.atoms[i]
        energy = phases.phases[i].formation_energy_per_atom * n_atoms
        per_atom = energy / n_atoms
        reduced = tuple(index.reduced[i].get(symbol, 0.0) for symbol in order)
        rows.append((reduced, per_atom, index.names[i], i, amounts, n_atoms))
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    references: dict[str, int] = {}
    minima: list[tuple[Any, ...]] = []
    for _, group in itertools.groupby(rows, key=lambda row: row[0]):
        entries = list(group)
        lowest = min(entries, key=lambda row: row[1])
        symbols = [symbol for symbol, amount in lowest[4].items() if amount]
        if len(symbols) == 1:
            references[symbols[0]] = len(minima)
        minima.append(lowest)
    missing = sorted(set(system) - set(references))
    if missing:
        raise ValueError(f"Missing terminal entries for elements {missing}")
    data = np.array(
        [[abs(row[4].get(symbol, 0.0)) / row[5] for symbol in system] + [row[1]] for row in minima]
    )
    vec = [minima[references[symbol]][1] for symbol in system] + [-1]
    formation = -np.dot(data, vec)
    chosen = np.where(formation < -FORMATION_ENERGY_TOL)[0].tolist()
    chosen.extend(references.values())
    qhull_data = data[chosen][:, 1:]
    extra = np.zeros(dim) + 1 / dim
    extra[-1] = np.max(qhull_data) + 1
    qhull_data = np.concatenate([qhull_data, [extra]], axis=0)
    if dim == 1:
        facets = np.array([[int(qhull_data.argmin(axis=0)[0])]])
    else:
        kept = []
        for facet in ConvexHull(qhull_data, qhull_options="Qt i").simplices:
            if max(facet) == len(qhull_data) - 1:
                continue
            matrix = qhull_data[facet]
            matrix[:, -1] = 1
            if abs(np.linalg.det(matrix)) > 1e-14:
                kept.append(facet)
        facets = np.asarray(kept, dtype=int).reshape(len(kept), dim)
    owners = np.array([minima[k][3] for k in chosen], dtype=int)
    return qhull_data[:-1], facets, owners


def _locate(hull: _Hull, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first facet (in pymatgen's order) holding each composition, and its coordinates.

    Returns
    -------
    tuple
        ``(located, facet, amounts)``: whether a facet holds the row, its index, and the
        row's barycentric coordinates in it (the decomposition amounts).
    """
    n, dim = fractions.shape
    points = np.ones((n, dim))
    points[:, :-1] = fractions[:, 1:]
    located = np.zeros(n, dtype=bool)
    facets = np.zeros(n, dtype=int)
    amounts = np.zeros((n, dim))
    step = max(1, BLOCK_SIZE // max(1, len(hull.inverses) * dim))
    for start in range(0, n, step):
        block = points[start : start + step]
        rows = np.arange(len(block))
        bary = np.einsum("nd,fde->nfe", block, hull.inverses)
        inside = (bary >= -IN_FACET_TOLERANCE).all(axis=2)
        first = inside.argmax(axis=1)
        located[start : start + step] = inside[rows, first]
        facets[start : start + step] = first
        amounts[start : start + step] = bary[rows, first]
    return located, facets, amounts


def _describe(
    hull: _Hull,
    index: _Index,
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
