"""Thermodynamic stability from predicted formation energies: distance to the convex hull.

A candidate's hull distance is its formation energy per atom minus that of the convex hull
of the known phases of its chemical system (pymatgen's ``PhaseDiagram``). The known phases
are the elemental reference entries (lowest-energy Materials Project elements) and the
compounds of the training data with their labelled formation energies; only those on the
hull matter, so passing every training compound is the same as passing its stable ones.

Formation energies become total energies on the references' scale, ``E = N·ΔH_f +
Σ n_el·μ_el`` with ``μ_el`` the reference energy per atom of each element, so the phase
diagram is built from the real reference entries and the elements sit at zero formation
energy.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matscreen.tasks.errors import ModelError


def load_reference_entries(path: Path) -> dict[str, Any]:
    """The elemental reference entries of a (gzipped) JSON file: ``{element: entry}``.

    Raises
    ------
    ModelError
        If the file is missing or does not hold pymatgen entry dicts by element.
    """
    from pymatgen.entries.computed_entries import ComputedEntry

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read reference entries ({exc})") from exc
    if not isinstance(document, dict):
        raise ModelError(f"{path}: expected a mapping of element to entry dict")
    entries = {}
    for element, entry in document.items():
        try:
            with warnings.catch_warnings():
                # Noble gases have no Pauling electronegativity; pymatgen warns while
                # building their compositions, which says nothing about the entries.
                warnings.filterwarnings("ignore", message="No Pauling electronegativity")
                built = ComputedEntry.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: entry of {element} is not a ComputedEntry ({exc})") from exc
        if not built.composition.is_element:
            raise ModelError(f"{path}: entry of {element} is {built.composition.formula}")
        entries[element] = built
    return entries


def _total_energy(formula: str, formation_energy: float, references: dict[str, Any]) -> Any:
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.core import Composition

    composition = Composition(formula)
    missing = sorted(str(e) for e in composition.elements if str(e) not in references)
    if missing:
        raise ModelError(f"{formula}: no elemental reference entry for {missing}")
    energy = formation_energy * composition.num_atoms + sum(
        amount * references[str(element)].energy_per_atom for element, amount in composition.items()
    )
    return PDEntry(composition, energy, name=formula)


def _phase_diagram(system: str, references: dict[str, Any], known_entries: list[Any]) -> Any:
    """The phase diagram of a chemical system (``O-Sr-Ti``): its elemental references plus
    the known phases made of its elements only."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

    elements = set(system.split("-"))
    phases = [PDEntry(references[el].composition, references[el].energy) for el in sorted(elements)]
    phases += [e for e in known_entries if {str(el) for el in e.composition.elements} <= elements]
    return PhaseDiagram(phases)


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
        If a formula holds an element without a reference entry.
    """
    from pymatgen.core import Composition

    known_entries = [_total_energy(f, e, references) for f, e in known]
    by_system: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for record_id, formula, energy in candidates:
        entry = _total_energy(formula, energy, references)
        by_system[Composition(formula).chemical_system].append((record_id, entry))
    distances: dict[str, float] = {}
    for system, members in by_system.items():
        diagram = _phase_diagram(system, references, known_entries)
        for record_id, entry in members:
            _, distance = diagram.get_decomp_and_e_above_hull(entry, allow_negative=True)
            distances[record_id] = float(distance)
    return distances


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
        If a formula holds an element without a reference entry.
    """
    from pymatgen.core import Composition

    known_entries = [_total_energy(f, e, references) for f, e in known]
    by_system: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for record_id, formula in candidates:
        composition = Composition(formula)
        missing = sorted(str(e) for e in composition.elements if str(e) not in references)
        if missing:
            raise ModelError(f"{formula}: no elemental reference entry for {missing}")
        by_system[composition.chemical_system].append((record_id, composition))
    energies: dict[str, float] = {}
    for system, members in by_system.items():
        diagram = _phase_diagram(system, references, known_entries)
        for record_id, composition in members:
            elemental = sum(
                composition.get_atomic_fraction(el) * references[str(el)].energy_per_atom
                for el in composition.elements
            )
            energies[record_id] = float(diagram.get_hull_energy_per_atom(composition) - elemental)
    return energies
