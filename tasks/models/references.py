"""The known phases a convex hull is built from, each with where it came from.

Every phase is a formula and a formation energy per atom measured from the elemental
references, so that phases of different origins share one energy scale and the elements sit
at zero:

- ``elements``: the elemental reference entries (pymatgen ComputedEntry dicts by element,
  e.g. the lowest-energy Materials Project elements); their energies per atom are the
  chemical potentials ``μ_el`` that total energies are measured from;
- ``training:<id>``: the labelled training records, ``(formula, formation energy, id)``;
- ``file:<name>``: pymatgen entry files, JSON lists of ComputedEntry, ComputedStructureEntry
  or PDEntry dicts, whose total energies (corrections included, no compatibility scheme
  applied) become ``(E - Σ n_el·μ_el) / N``;
- ``mp:<material id>`` (``mp:<formula>`` for a document without an id): the Materials
  Project's phases of the candidates' chemical systems and all their sub-systems.

A phase also keeps the id of its record (training id, material id, entry id), so that a
candidate is never measured against a hull holding its own record.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any, TypeGuard

from matscreen.tasks.errors import ModelError
from matscreen.tasks.sources.records import SourceSnapshot
from matscreen.tasks.spec import StabilitySpec

#: The origin of the elemental reference phases.
ELEMENTS_ORIGIN = "elements"

#: Entry classes an entry file may hold (their dicts' ``@class``).
ENTRY_CLASSES = ("ComputedEntry", "ComputedStructureEntry", "PDEntry")


@dataclass(frozen=True)
class Phase:
    """One known phase of a hull.

    Attributes
    ----------
    formula
        The phase's formula as its origin gives it (``SrTiO3``).
    formation_energy_per_atom
        eV/atom, measured from the elemental references.
    origin
        Where it came from: ``elements``, ``training:<id>``, ``file:<name>`` or ``mp:<id>``.
    record_id
        The id of its record (training id, MP material id, entry id), if it has one.
    """

    formula: str
    formation_energy_per_atom: float
    origin: str
    record_id: str | None = None


@dataclass(frozen=True)
class ReferencePhases:
    """The phases hulls are built from, and what was left out.

    Attributes
    ----------
    elements
        Reference energy per atom of each element (eV/atom): the zero of the formation
        energies. A candidate with an element not in it has no hull.
    phases
        Every known phase, the elemental references among them (at zero).
    skipped
        One line for each phase left out (no formation energy, unreadable formula).
    snapshots
        The Materials Project reads the phases came from (database release, query, sha256).
    """

    elements: Mapping[str, float]
    phases: tuple[Phase, ...]
    skipped: tuple[str, ...] = ()
    snapshots: tuple[SourceSnapshot, ...] = ()
    # Hulls and indexes derived from the phases, kept for later chunks of candidates.
    cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False)


def load_reference_entries(path: Path) -> dict[str, Any]:
    """The elemental reference entries of a (gzipped) JSON file: ``{element: entry}``.

    Raises
    ------
    ModelError
        If the file is missing or does not hold pymatgen entry dicts by element.
    """
    from pymatgen.entries.computed_entries import ComputedEntry

    path = Path(path)
    document = _read_json(path, "reference entries")
    if not isinstance(document, dict):
        raise ModelError(f"{path}: expected a mapping of element to entry dict")
    entries = {}
    for element, entry in document.items():
        try:
            with quiet_pymatgen():
                built = ComputedEntry.from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: entry of {element} is not a ComputedEntry ({exc})") from exc
        if not built.composition.is_element:
            raise ModelError(f"{path}: entry of {element} is {built.composition.formula}")
        entries[element] = built
    return entries


def element_energies(path: Path) -> dict[str, float]:
    """Reference energy per atom of each element of an elemental reference file (eV/atom).

    Raises
    ------
    ModelError
        If the file cannot be read, as for :func:`load_reference_entries`.
    """
    return {
        str(entry.composition.elements[0]): float(entry.energy_per_atom)
        for entry in load_reference_entries(path).values()
    }


def element_phases(elements: Mapping[str, float]) -> list[Phase]:
    """The elemental references as phases at zero formation energy."""
    return [Phase(element, 0.0, ELEMENTS_ORIGIN) for element in sorted(elements)]


def load_entry_phases(path: Path, elements: Mapping[str, float]) -> list[Phase]:
    """The phases of a pymatgen entry file, with formation energies from ``elements``.

    Parameters
    ----------
    path
        A JSON file (may be gzipped) holding a list of ComputedEntry,
        ComputedStructureEntry or PDEntry dicts.
    elements
        Reference energy per atom of each element (:func:`element_energies`).

    Returns
    -------
    list of Phase
        One per entry, origin ``file:<file name>``, record id the entry's ``entry_id``.

    Raises
    ------
    ModelError
        If the file is not a JSON list, or an entry is not one of :data:`ENTRY_CLASSES`,
        cannot be built, has no finite energy or holds an element without a reference; the
        message names the file and the entry (position and id).
    """
    path = Path(path)
    document = _read_json(path, "entry file")
    if not isinstance(document, list):
        raise ModelError(f"{path}: expected a JSON list of entry dicts")
    phases = []
    for number, raw in enumerate(document, start=1):
        entry = _build_entry(raw, f"{path}: entry {number}")
        entry_id = getattr(entry, "entry_id", None)
        where = f"{path}: entry {number}" + (f" ({entry_id})" if entry_id else "")
        composition = entry.composition
        missing = sorted(str(el) for el in composition.elements if str(el) not in elements)
        if missing:
            raise ModelError(f"{where}: no elemental reference entry for {missing}")
        energy = float(entry.energy)
        if not math.isfinite(energy) or composition.num_atoms <= 0:
            raise ModelError(f"{where}: energy {energy} of {composition.formula} is not usable")
        reference = sum(amount * elements[str(el)] for el, amount in composition.items())
        phases.append(
            Phase(
                composition.reduced_formula,
                (energy - reference) / composition.num_atoms,
                f"file:{path.name}",
                str(entry_id) if entry_id else None,
            )
        )
    return phases


def training_phases(training: Iterable[tuple[str, float, str]]) -> tuple[list[Phase], list[str]]:
    """The labelled training records as phases, and a line for each one left out.

    Parameters
    ----------
    training
        ``(formula, formation energy per atom, id)``.

    Returns
    -------
    tuple
        The phases (origin ``training:<id>``) and the records skipped (no finite energy,
        unreadable formula).
    """
    phases, skipped = [], []
    for formula, energy, record_id in training:
        where = f"training:{record_id} ({formula})"
        if not _is_number(energy) or not math.isfinite(energy):
            skipped.append(f"{where}: formation energy is {energy!r}")
        elif _composition(formula) is None:
            skipped.append(f"{where}: formula cannot be read")
        else:
            phases.append(
                Phase(str(formula), float(energy), f"training:{record_id}", str(record_id))
            )
    return phases, skipped


def mp_phases(documents: Iterable[Any]) -> tuple[list[Phase], list[str]]:
    """Materials Project summary documents as phases, and a line for each one left out.

    A document's origin is ``mp:<material_id>``, or ``mp:<formula_pretty>`` when it has no
    id (as the recorded documents of the shared data folder).
    """
    phases, skipped = [], []
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict):
            skipped.append(f"mp document {number}: not a JSON object")
            continue
        material_id = document.get("material_id")
        formula = document.get("formula_pretty")
        energy = document.get("formation_energy_per_atom")
        where = f"mp:{material_id or formula or f'document {number}'}"
        if not isinstance(formula, str) or _composition(formula) is None:
            skipped.append(f"{where}: no readable formula_pretty")
        elif not _is_number(energy) or not math.isfinite(energy):
            skipped.append(f"{where}: no formation_energy_per_atom")
        else:
            record_id = str(material_id) if material_id else None
            phases.append(Phase(formula, float(energy), f"mp:{material_id or formula}", record_id))
    return phases, skipped


def chemical_systems(systems: Iterable[str], elements: Iterable[str] | None = None) -> list[str]:
    """Some chemical systems and all their sub-systems.

    Each item is a chemical system (``O-Sr-Ti``) or a formula (``SrTiO3``); either gives
    ``O, Sr, Ti, O-Sr, O-Ti, Sr-Ti, O-Sr-Ti``: by number of elements, then alphabetically,
    each with its elements sorted. Items that cannot be read, and (when ``elements`` is
    given) items with an element not in it, are left out: they have no hull.
    """
    known = None if elements is None else set(elements)
    tops: set[tuple[str, ...]] = set()
    for item in set(systems):
        symbols = _symbols(item)
        if symbols and (known is None or set(symbols) <= known):
            tops.add(symbols)
    found = {sub for top in tops for n in range(1, len(top) + 1) for sub in combinations(top, n)}
    return ["-".join(system) for system in sorted(found, key=lambda s: (len(s), s))]


def reference_phases(
    spec: StabilitySpec,
    training: Iterable[tuple[str, float, str]] = (),
    systems: Iterable[str] = (),
    state_dir: Path | None = None,
) -> ReferencePhases:
    """Assemble the known phases a campaign's stability section names.

    Parameters
    ----------
    spec
        The campaign's ``stability`` section.
    training
        ``(formula, formation energy per atom, id)`` of the labelled training records (per
        atom also when ``spec.per`` is ``cell``: the caller divides by each record's atoms);
        used when ``spec.training_phases`` is true.
    systems
        The candidates' chemical systems (``O-Sr-Ti``) or formulas; with ``spec.mp``, the
        Materials Project's phases of these systems and all their sub-systems are read.
        Unused otherwise.
    state_dir
        Where the Materials Project read keeps its pages (``<state_dir>/mp/<key>/``; e.g.
        ``$MATSCREEN_HOME/sources``), so that a killed read resumes and a re-read of the
        same release fetches nothing.

    Returns
    -------
    ReferencePhases
        Elements, phases (elements first, then training, files, Materials Project), the
        phases skipped and the Materials Project read's snapshot.

    Raises
    ------
    ModelError
        If the spec names no elemental reference file, a file cannot be read, or an entry
        is bad (the message names the file and the entry).
    SourceError
        If the Materials Project read fails (key missing or refused, retries exhausted).
    """
    if spec.elements is None:
        raise ModelError(
            "stability.elements: no elemental reference file (give one, or load the spec "
            "with a data folder for the default)"
        )
    elements = element_energies(spec.elements)
    phases = element_phases(elements)
    learned, skipped = training_phases(training if spec.training_phases else ())
    phases += learned
    for path in spec.entries:
        phases += load_entry_phases(path, elements)
    snapshots = []
    if spec.mp is not None:
        wanted = chemical_systems(systems, elements)
        if wanted:
            from matscreen.tasks.sources.mp import read_reference_documents

            documents, snapshot = read_reference_documents(spec.mp, wanted, state_dir)
            found, left_out = mp_phases(documents)
            phases += found
            skipped += left_out
            snapshots.append(snapshot)
    return ReferencePhases(elements, tuple(phases), tuple(skipped), tuple(snapshots))


# --- helpers ---------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: cannot read {what} ({exc})") from exc


def _build_entry(raw: Any, where: str) -> Any:
    from pymatgen.analysis.phase_diagram import PDEntry
    from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

    classes: dict[str, Any] = {
        "ComputedEntry": ComputedEntry,
        "ComputedStructureEntry": ComputedStructureEntry,
    }
    classes["PDEntry"] = PDEntry
    name = raw.get("@class") if isinstance(raw, dict) else None
    if name not in classes:
        shown = f"@class {name!r}" if isinstance(raw, dict) else type(raw).__name__
        raise ModelError(f"{where}: not an entry dict ({shown}; expected one of {ENTRY_CLASSES})")
    try:
        with quiet_pymatgen():
            return classes[name].from_dict(raw)
    # pymatgen raises many exception types for a malformed dict; any of them means this
    # entry is unusable, and the message names it.
    except Exception as exc:
        raise ModelError(f"{where}: {name} cannot be built ({type(exc).__name__}: {exc})") from exc


#: A chemical system as written by the Materials Project and pymatgen: ``O-Sr-Ti``, ``Sr``.
_SYSTEM = re.compile(r"^[A-Z][a-z]?(-[A-Z][a-z]?)*$")


def _symbols(item: str) -> tuple[str, ...]:
    """The sorted element symbols of a chemical system or formula; () if unreadable."""
    if isinstance(item, str) and _SYSTEM.match(item):
        composition = _composition(item.replace("-", ""))
    else:
        composition = _composition(item)
    if composition is None:
        return ()
    return tuple(sorted(str(el) for el in composition.elements))


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _composition(formula: Any) -> Any:
    """The pymatgen Composition of a formula, or None if it cannot be read."""
    from pymatgen.core import Composition

    try:
        with quiet_pymatgen():
            composition = Composition(formula)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if composition.num_atoms <= 0 or any(amount < 0 for amount in composition.values()):
        return None
    return composition


@contextmanager
def quiet_pymatgen() -> Iterator[None]:
    """Silence pymatgen's warning that noble gases have no Pauling electronegativity, which
    it gives while building their compositions and says nothing about the phases."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No Pauling electronegativity")
        yield


@lru_cache(maxsize=1 << 16)
def element_order(symbols: tuple[str, ...]) -> tuple[str, ...]:
    """The element symbols in pymatgen's sort order (Pauling electronegativity, then
    symbol), as ``Composition`` compares compositions."""
    from pymatgen.core import Element

    return tuple(str(element) for element in sorted(Element(symbol) for symbol in symbols))
