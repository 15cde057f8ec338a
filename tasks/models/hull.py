"""The convex hull of the known phases of a chemical system, on plain arrays.

pymatgen's ``PhaseDiagram`` construction step for step (entries sorted and reduced to the
lowest of each composition, qhull, facets of non-zero volume) without building
Composition objects, and the location of compositions on its facets by barycentric
coordinates in pymatgen's facet order and tolerances. Hulls are kept per system (and
left-out phases) in the :class:`~matscreen.tasks.models.references.ReferencePhases`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.references import (
    ReferencePhases,
    quiet_pymatgen,
)

#: A composition is in a facet when no barycentric coordinate is below minus this
#: (``PhaseDiagram.numerical_tol / 10``, as pymatgen's ``_get_facet_and_simplex``).
IN_FACET_TOLERANCE = 1e-9


#: pymatgen's ``PhaseDiagram.formation_energy_tol``: phases at or above the elements' plane
#: (within it) are left out of the hull.
FORMATION_ENERGY_TOL = 1e-11


#: Most barycentric coordinates (candidates x facets x elements) computed in one block.
BLOCK_SIZE = 2_000_000


# --- the phases, indexed -----------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseIndex:
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


def phase_index(phases: ReferencePhases) -> PhaseIndex:
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
    index = PhaseIndex(
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
class Hull:
    """The lower hull of one chemical system, as pymatgen's PhaseDiagram finds it.

    ``inverses[f]`` turns ``[fractions of elements[1:], 1]`` into barycentric coordinates
    in facet ``f``; ``energies[f]`` and ``owners[f]`` are its vertices' formation energies
    per atom and phase indices.
    """

    elements: tuple[str, ...]
    inverses: np.ndarray
    energies: np.ndarray
    owners: np.ndarray


def system_hull(
    phases: ReferencePhases, index: PhaseIndex, system: tuple[str, ...], own: frozenset[int]
) -> Hull:
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
    hull = Hull(
        elements=system,
        inverses=np.linalg.inv(augmented),
        energies=vertices[:, :, -1],
        owners=owners[facets],
    )
    phases.cache[key] = hull
    return hull


def _lower_hull(
    phases: ReferencePhases, index: PhaseIndex, system: tuple[str, ...], members: list[int]
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


def locate(hull: Hull, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
