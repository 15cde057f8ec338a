"""Hypothetical candidates made by decorating a prototype structure with elements.

A prototype is a crystal structure whose sites carry placeholder labels (``A``, ``B``,
``X`` …); a candidate puts one element (or, on a label with several sites, an anion group
such as ``O2N``) on every label. This is how AFLOW's prototype library and Castelli et
al.'s cubic perovskite screen (Energy Environ. Sci. 5, 5814 (2012)) build their
hypothetical materials.

Built-in prototypes (:data:`BUILTIN_PROTOTYPES`), all cubic, with the lattice parameter
``a`` of the conventional cubic cell set per candidate:

``perovskite_ABX3``
    Pm-3m, 5 atoms: A at (0, 0, 0), B at (½, ½, ½), X at the three face centres.
``rocksalt_AX``, ``zincblende_AX``, ``fluorite_AX2``
    Fm-3m, F-43m and Fm-3m, as their 2-, 2- and 3-atom primitive cells.

A spec's ``prototype`` may instead be the path of a structure file (CIF, POSCAR, anything
``Structure.from_file`` reads); each distinct species symbol of the file is a site label
(dummy species such as ``X`` or ``Z`` in a CIF, or real elements). A real-element label the
spec's ``sites`` leaves out keeps its element.

Site entries
    ``sites`` maps every label to a list of entries. An entry is an element symbol, which
    fills all sites of the label (``"O"`` on the perovskite X label gives O3), or a group
    written like a formula whose counts add up to the label's number of sites
    (``"O2N"``, ``"OFN"``, ``"N3"`` on the three X sites). A group fills the label's sites
    in the prototype's site order: ``O2N`` puts O on the first two X sites and N on the
    third. In the cubic perovskite the three X sites are equivalent, so that one
    arrangement stands for all of them, as in Castelli's 5-atom oxynitride cells; in a
    file prototype whose sites of one label are not equivalent, only that one arrangement
    is made.

Oxidation states (``charge_neutral``)
    An element may take its positive :attr:`Element.icsd_oxidation_states` and its
    negative :attr:`Element.common_oxidation_states`. The ICSD list is used for cations
    because it holds the valences seen in real crystals (Ti3+ in LaTiO3, Nb4+ …) where the
    "common" list keeps one (Ti: only 4+) and would reject known compounds; the common list
    is used for anions because the ICSD list also holds N- and N2- (azides, diazenides),
    with which nearly any oxynitride would count as neutral. In built-in prototypes cation
    labels (A, B) take only positive and anion labels (X) only negative states; in a file
    prototype a label's sign comes from the oxidation states written in the file, if any.
    Each element of one label takes one state. A combination is kept when some choice of
    states sums to zero over all sites; when several do, the one whose species occur most
    often in the ICSD (pymatgen's bond-valence occurrence counts, the table
    ``Composition.oxi_state_guesses`` ranks by) is reported. The achievable charge sums
    are computed once per site entry, so a candidate costs a few dictionary look-ups.

Lattice (touching spheres)
    Every site gets a radius: its Shannon ionic radius for the chosen oxidation state and
    the site's coordination number (perovskite A XII, B VI, X VI; rocksalt VI/VI;
    zincblende IV/IV; fluorite A VIII, X IV; in file prototypes, the number of neighbours
    within 1.2 times the site's nearest-neighbour distance), the nearest tabulated
    coordination when that one is missing (ties go to the higher one, high spin before
    low spin). When a combination has no neutral assignment (only with ``charge_neutral``
    off) or a Shannon radius is missing, all sites get pymatgen's atomic radius instead.
    The prototype cell is then scaled isotropically to the smallest size at which no two
    sites (periodic images included) are closer than the sum of their radii. For the
    perovskite this is ``a = max(2(r_B + r_X), √2(r_A + r_X), √2·2r_X, …)``: the
    larger of the B–X and A–X contacts, the choice that never squeezes a site, which a
    relaxation then shrinks. It gives SrTiO3 4.02 Å (measured 3.905), BaTiO3 4.26 Å
    (4.00), NaCl 5.66 Å (5.64), ZnS 5.64 Å (5.41) and CaF2 5.61 Å (5.46).
"""

from __future__ import annotations

import itertools
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pymatgen.core
from monty.serialization import loadfn
from pymatgen.core import Composition, Element, Lattice, Species, Structure
from pymatgen.core.composition import reduce_formula

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, record_from_dict
from matscreen.tasks.sources.prototype_symmetry import (
    FirstImage,
    exchanged_label_groups,
    label_exchanging_permutations,
)
from matscreen.tasks.spec import PrototypeSourceSpec

#: A site's coordination is the number of neighbours within this factor of its nearest
#: neighbour distance (file prototypes); 1.2 separates the first shell from the second in
#: the common ionic structure types (perovskite A: 12 X at a/√2, then 8 B at 0.87a).
_SHELL_FACTOR = 1.2

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

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")
_ENTRY = re.compile(r"(?:[A-Z][a-z]?\d*)+")


@dataclass(frozen=True, eq=False)
class Prototype:
    """A structure whose sites carry placeholder labels, and how to decorate it.

    Attributes
    ----------
    name
        Name used in record ids (built-in name, or the file's stem).
    lattice
        3x3 lattice vectors (rows). Built-in prototypes are in units of the conventional
        cubic lattice parameter ``a``; a file prototype keeps the file's lattice in Å.
    frac_coords
        Fractional coordinates of the sites, shape (n_sites, 3).
    site_labels
        The placeholder label of every site, in site order.
    coordination
        Coordination number of every site, used to pick Shannon radii.
    charge_signs
        Label -> +1 (cation), -1 (anion) or 0 (either) for the oxidation states it may take.
    reference_length
        Length of ``lattice`` reported as the lattice parameter after scaling: 1 for
        built-ins (so the scale is ``a``), the first lattice vector's length for files.
    space_group
        International symbol of the undecorated prototype (built-ins only).
    path
        The structure file a prototype was read from (None for built-ins).
    perovskite_labels
        The (A, B, X) labels, for prototypes whose Goldschmidt tolerance factor is reported.
    """

    name: str
    lattice: np.ndarray
    frac_coords: np.ndarray
    site_labels: tuple[str, ...]
    coordination: tuple[int, ...]
    charge_signs: dict[str, int]
    reference_length: float = 1.0
    space_group: str | None = None
    path: Path | None = None
    perovskite_labels: tuple[str, str, str] | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """The distinct labels, in order of first appearance."""
        return tuple(dict.fromkeys(self.site_labels))

    def multiplicity(self, label: str) -> int:
        """Number of sites that carry ``label``."""
        return self.site_labels.count(label)

    def decorate(self, species: Sequence[str], scale: float) -> Structure:
        """Return the prototype with ``species[i]`` on site i and the lattice scaled by ``scale``.

        For built-in prototypes ``scale`` is the conventional cubic lattice parameter in Å.
        """
        return Structure(Lattice(self.lattice * scale), list(species), self.frac_coords)

    def decorate_dict(self, species: Sequence[str], scale: float) -> dict[str, Any]:
        """``decorate(species, scale).as_dict()``, built without pymatgen objects (a tenth
        of the time); ``species`` are element symbols. The lattice lengths, angles and
        volume, which only describe the matrix, are computed in plain floats."""
        matrix = (self.lattice * scale).tolist()
        lengths = [math.sqrt(x * x + y * y + z * z) for x, y, z in matrix]
        angles = []
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            cosine = sum(u * v for u, v in zip(matrix[j], matrix[k], strict=True))
            cosine = min(1.0, max(-1.0, cosine / (lengths[j] * lengths[k])))
            angles.append(math.degrees(math.acos(cosine)))
        (a0, a1, a2), (b0, b1, b2), c = matrix
        cross = (a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0)
        lattice = {
            "matrix": matrix,
            "pbc": (True, True, True),
            "a": lengths[0],
            "b": lengths[1],
            "c": lengths[2],
            "alpha": angles[0],
            "beta": angles[1],
            "gamma": angles[2],
            "volume": abs(cross[0] * c[0] + cross[1] * c[1] + cross[2] * c[2]),
        }
        cartesian = (np.asarray(self.frac_coords) @ np.asarray(matrix)).tolist()
        sites = [
            {
                "species": [{"element": symbol, "occu": 1}],
                "abc": frac,
                "properties": {},
                "label": symbol,
                "xyz": xyz,
            }
            for symbol, frac, xyz in zip(species, self.frac_coords.tolist(), cartesian, strict=True)
        ]
        return {
            "@module": "pymatgen.core.structure",
            "@class": "Structure",
            "charge": 0.0,
            "lattice": lattice,
            "properties": {},
            "sites": sites,
        }

    def contact_distances(self) -> np.ndarray:
        """Shortest distance between every pair of sites, periodic images included.

        The diagonal holds the distance from a site to its own nearest image (the shortest
        lattice vector). In units of ``lattice`` (so multiplied by the scale after
        decoration).
        """
        lattice = Lattice(self.lattice)
        distances = lattice.get_all_distances(self.frac_coords, self.frac_coords)
        images = lattice.get_points_in_sphere(
            np.zeros((1, 3)), np.zeros(3), min(lattice.abc) * (1 + 1e-6)
        )
        shortest = min(float(image[1]) for image in images if image[1] > 1e-8)
        np.fill_diagonal(distances, shortest)
        return distances


def _cubic(
    name: str,
    lattice: list[list[float]],
    sites: list[tuple[str, tuple[float, float, float], int]],
    space_group: str,
    perovskite: bool = False,
) -> Prototype:
    labels = tuple(label for label, _, _ in sites)
    return Prototype(
        name=name,
        lattice=np.array(lattice, dtype=float),
        frac_coords=np.array([coords for _, coords, _ in sites], dtype=float),
        site_labels=labels,
        coordination=tuple(cn for _, _, cn in sites),
        # A and B are cation labels, X the anion label, in every built-in prototype.
        charge_signs={label: (-1 if label == "X" else 1) for label in labels},
        space_group=space_group,
        perovskite_labels=("A", "B", "X") if perovskite else None,
    )


_SIMPLE_CUBIC = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
#: Primitive vectors of the face-centred cubic lattice, in units of the conventional a.
_FCC = [[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]

#: Built-in prototypes by name.
BUILTIN_PROTOTYPES: dict[str, Prototype] = {
    prototype.name: prototype
    for prototype in (
        _cubic(
            "perovskite_ABX3",
            _SIMPLE_CUBIC,
            [
                ("A", (0.0, 0.0, 0.0), 12),
                ("B", (0.5, 0.5, 0.5), 6),
                ("X", (0.5, 0.5, 0.0), 6),
                ("X", (0.5, 0.0, 0.5), 6),
                ("X", (0.0, 0.5, 0.5), 6),
            ],
            "Pm-3m",
            perovskite=True,
        ),
        # In the primitive fcc basis, fractional (t, t, t) is the Cartesian point (t, t, t)·a.
        _cubic("rocksalt_AX", _FCC, [("A", (0, 0, 0), 6), ("X", (0.5, 0.5, 0.5), 6)], "Fm-3m"),
        _cubic("zincblende_AX", _FCC, [("A", (0, 0, 0), 4), ("X", (0.25, 0.25, 0.25), 4)], "F-43m"),
        _cubic(
            "fluorite_AX2",
            _FCC,
            [("A", (0, 0, 0), 8), ("X", (0.25, 0.25, 0.25), 4), ("X", (0.75, 0.75, 0.75), 4)],
            "Fm-3m",
        ),
    )
}


def _file_charge_signs(structure: Structure) -> dict[str, int]:
    """Sign of the oxidation states written in the file per label (0 when none or mixed)."""
    signs: dict[str, set[int]] = {}
    for site in structure:
        oxidation = getattr(site.specie, "oxi_state", None) or 0
        signs.setdefault(str(site.specie.symbol), set()).add(int(np.sign(oxidation)))
    return {label: (found.pop() if len(found) == 1 else 0) for label, found in signs.items()}


def _file_coordination(structure: Structure, where: str) -> tuple[int, ...]:
    numbers = []
    # Every site has an image of itself within the longest cell edge, so this reach always
    # finds the nearest neighbour.
    reach = max(structure.lattice.abc) * 1.01
    for index, site in enumerate(structure):
        neighbours = structure.get_neighbors(site, reach)
        if not neighbours:
            raise SourceError(f"{where}: site {index} has no neighbour within {reach:.2f} Å")
        nearest = min(neighbour.nn_distance for neighbour in neighbours)
        if nearest < 1e-3:
            raise SourceError(f"{where}: site {index} overlaps another site")
        numbers.append(sum(n.nn_distance <= nearest * _SHELL_FACTOR for n in neighbours))
    return tuple(numbers)


def load_prototype(prototype: str, source: str) -> Prototype:
    """Return the built-in prototype named ``prototype``, or read it from that file path.

    Raises
    ------
    SourceError
        If ``prototype`` is neither a built-in name nor a readable, ordered structure file.
    """
    if prototype in BUILTIN_PROTOTYPES:
        return BUILTIN_PROTOTYPES[prototype]
    where = f"source {source}: prototype {prototype!r}"
    path = Path(prototype).expanduser()
    if not path.is_file():
        raise SourceError(
            f"{where} is neither a built-in prototype ({', '.join(BUILTIN_PROTOTYPES)}) "
            "nor an existing structure file"
        )
    with warnings.catch_warnings():
        # Dummy species in a CIF are the point of a prototype file; pymatgen warns on each.
        warnings.simplefilter("ignore")
        try:
            structure = Structure.from_file(path)
        # pymatgen's readers raise many exception types on malformed files; any of them
        # means the prototype cannot be used at all.
        except Exception as exc:
            raise SourceError(f"{where}: unreadable ({type(exc).__name__}: {exc})") from exc
    if len(structure) == 0:
        raise SourceError(f"{where}: the file holds no sites")
    if not structure.is_ordered:
        raise SourceError(f"{where}: disordered structure; a prototype needs one label per site")
    return Prototype(
        name=path.stem,
        lattice=np.array(structure.lattice.matrix, dtype=float),
        frac_coords=np.array(structure.frac_coords, dtype=float),
        site_labels=tuple(str(site.specie.symbol) for site in structure),
        coordination=_file_coordination(structure, where),
        charge_signs=_file_charge_signs(structure),
        reference_length=float(structure.lattice.a),
        path=path.resolve(),
    )


@cache
def _icsd_occurrence() -> dict[tuple[str, int], int]:
    """How often each (element, oxidation state) occurs in the ICSD, from pymatgen's table."""
    path = Path(pymatgen.core.__file__).parent / "icsd_bv.yaml"
    if not path.is_file():
        raise SourceError(f"pymatgen's ICSD oxidation-state occurrence table is missing: {path}")
    occurrence = loadfn(path)["occurrence"]
    table: dict[tuple[str, int], int] = {}
    for name, count in occurrence.items():
        species = Species.from_str(name)
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


@dataclass(frozen=True)
class SiteEntry:
    """One choice for one label: the element on each of its sites.

    Attributes
    ----------
    label
        The prototype label.
    elements
        Element of each site of the label, in the prototype's site order.
    text
        Written form used in ids: ``Ti``, ``O3``, ``O2N``.
    charges
        Total charge of the label's sites -> (ICSD occurrence score, state of each element),
        for every achievable assignment of allowed oxidation states (best score kept).
    """

    label: str
    elements: tuple[str, ...]
    text: str
    charges: dict[int, tuple[int, dict[str, int]]]

    @property
    def element_set(self) -> frozenset[str]:
        """The distinct elements of the entry."""
        return frozenset(self.elements)


def _entry_charges(elements: tuple[str, ...], sign: int) -> dict[int, tuple[int, dict[str, int]]]:
    counts: dict[str, int] = {}
    for element in elements:
        counts[element] = counts.get(element, 0) + 1
    occurrence = _icsd_occurrence()
    symbols = list(counts)
    charges: dict[int, tuple[int, dict[str, int]]] = {}
    choices = [allowed_oxidation_states(symbol, sign) for symbol in symbols]
    for states in itertools.product(*choices):
        total = sum(state * counts[symbol] for symbol, state in zip(symbols, states, strict=True))
        score = sum(
            occurrence.get((symbol, state), 0) * counts[symbol]
            for symbol, state in zip(symbols, states, strict=True)
        )
        if total not in charges or score > charges[total][0]:
            charges[total] = (score, dict(zip(symbols, states, strict=True)))
    return charges


def parse_entry(text: str, label: str, n_sites: int, sign: int, where: str) -> SiteEntry:
    """Parse one ``sites`` entry (``"Ti"``, ``"O2N"``) for a label of ``n_sites`` sites.

    Raises
    ------
    SourceError
        If the entry is not an element symbol or a group of them whose counts add up to
        ``n_sites``, names an element twice, or names an unknown element.
    """
    entry = str(text).strip()
    if not _ENTRY.fullmatch(entry):
        raise SourceError(f"{where}: {text!r} is neither an element symbol nor a group like 'O2N'")
    tokens = [(symbol, int(count) if count else None) for symbol, count in _TOKEN.findall(entry)]
    symbols = [symbol for symbol, _ in tokens]
    unknown = [symbol for symbol in symbols if not Element.is_valid_symbol(symbol)]
    if unknown:
        raise SourceError(f"{where}: {text!r}: unknown element symbol(s) {unknown}")
    if len(set(symbols)) != len(symbols):
        raise SourceError(f"{where}: {text!r} names an element twice")
    if len(tokens) == 1 and tokens[0][1] is None:
        tokens = [(symbols[0], n_sites)]
    counts = [1 if count is None else count for _, count in tokens]
    if any(count == 0 for count in counts) or sum(counts) != n_sites:
        raise SourceError(
            f"{where}: {text!r} puts {sum(counts)} atom(s) on the {n_sites} site(s) of "
            f"label {label!r}"
        )
    elements = tuple(
        symbol for symbol, count in zip(symbols, counts, strict=True) for _ in range(count)
    )
    written = "".join(
        symbol + (str(count) if count > 1 else "")
        for symbol, count in zip(symbols, counts, strict=True)
    )
    return SiteEntry(label, elements, written, _entry_charges(elements, sign))


def site_entries(spec: PrototypeSourceSpec, prototype: Prototype) -> list[list[SiteEntry]]:
    """Parse and check ``spec.sites`` against the prototype; one entry list per label.

    Raises
    ------
    SourceError
        If ``sites`` names a label the prototype lacks, leaves out a label that is not a
        real element of a file prototype, or holds an empty list, a bad entry or a repeat.
    """
    source = f"source {spec.name}"
    unknown = sorted(set(spec.sites) - set(prototype.labels))
    if unknown:
        raise SourceError(
            f"{source}: sites names label(s) {unknown} that prototype {prototype.name!r} "
            f"does not have (its labels: {list(prototype.labels)})"
        )
    lists = []
    for label in prototype.labels:
        if label in spec.sites:
            texts = list(spec.sites[label])
        elif prototype.path is not None and Element.is_valid_symbol(label):
            texts = [label]  # a real element of a file prototype that stays as it is
        else:
            raise SourceError(
                f"{source}: sites lacks label {label!r} of prototype {prototype.name!r}"
            )
        if not texts:
            raise SourceError(f"{source}: sites.{label} is an empty list")
        entries = []
        seen: dict[tuple[str, ...], str] = {}
        for index, text in enumerate(texts):
            where = f"{source}: sites.{label}[{index}]"
            entry = parse_entry(
                text, label, prototype.multiplicity(label), prototype.charge_signs[label], where
            )
            key = tuple(sorted(entry.elements))
            if key in seen:
                raise SourceError(f"{where}: {text!r} repeats {seen[key]!r}")
            seen[key] = str(text)
            entries.append(entry)
        lists.append(entries)
    return lists


def _neutral_assignment(
    entries: tuple[SiteEntry, ...],
) -> tuple[dict[str, int], ...] | None:
    """The best-scoring oxidation states (one dict per entry) summing to zero, or None."""
    *head, last = entries
    best: tuple[int, tuple[dict[str, int], ...]] | None = None
    for combination in itertools.product(*(entry.charges.items() for entry in head)):
        total = sum(charge for charge, _ in combination)
        closing = last.charges.get(-total)
        if closing is None:
            continue
        score = closing[0] + sum(option[0] for _, option in combination)
        if best is None or score > best[0]:
            best = (score, tuple(option[1] for _, option in combination) + (closing[1],))
    return None if best is None else best[1]


@dataclass(frozen=True)
class Candidate:
    """One decoration of a prototype, before its structure is built.

    Attributes
    ----------
    prototype
        The decorated prototype.
    entries
        One :class:`SiteEntry` per label, in the prototype's label order.
    oxidation_states
        Label -> element -> oxidation state of a neutral assignment, or None if none exists.
    """

    prototype: Prototype
    entries: tuple[SiteEntry, ...]
    oxidation_states: dict[str, dict[str, int]] | None

    @property
    def source_id(self) -> str:
        """Readable, deterministic id: ``perovskite_ABX3:Ba-Ti-O2N``."""
        return f"{self.prototype.name}:{'-'.join(entry.text for entry in self.entries)}"

    @property
    def assignment(self) -> dict[str, str]:
        """Label -> written entry (``{"A": "Ba", "B": "Ti", "X": "O2N"}``)."""
        return {entry.label: entry.text for entry in self.entries}

    def site_species(self) -> list[str]:
        """The element on every site of the prototype, in site order."""
        return _site_species(self.prototype, self.entries)

    def site_radii(self) -> tuple[list[float], str]:
        """Radius of every site and which radii these are (``shannon_ionic`` or ``atomic``).

        Raises
        ------
        RecordError
            If some element has neither a usable Shannon radius nor an atomic radius.
        """
        species = self.site_species()
        if self.oxidation_states is not None:
            radii = [
                shannon_radius(element, self.oxidation_states[label][element], coordination)
                for element, label, coordination in zip(
                    species,
                    self.prototype.site_labels,
                    self.prototype.coordination,
                    strict=True,
                )
            ]
            if all(radius is not None for radius in radii):
                return [float(radius) for radius in radii if radius is not None], "shannon_ionic"
        atomic = [atomic_radius(element) for element in species]
        missing = sorted({e for e, r in zip(species, atomic, strict=True) if r is None})
        if missing:
            raise RecordError(
                f"{self.source_id}: no radius for {missing} to set the lattice parameter "
                "(no Shannon radius for a neutral assignment and no atomic radius)"
            )
        return [float(radius) for radius in atomic if radius is not None], "atomic"


def _site_species(prototype: Prototype, entries: Sequence[SiteEntry]) -> list[str]:
    remaining = {entry.label: list(entry.elements) for entry in entries}
    return [remaining[label].pop(0) for label in prototype.site_labels]


def iter_candidates(
    spec: PrototypeSourceSpec, prototype: Prototype | None = None
) -> Iterator[Candidate]:
    """Enumerate the decorations ``spec`` asks for, lazily, in ``itertools.product`` order.

    The product runs over the labels in the prototype's order and over each label's entries
    in the order ``sites`` lists them; ``distinct_elements`` and ``charge_neutral`` filter
    it. A decoration that a symmetry of the prototype turns into an earlier one (B and B'
    swapped in a double perovskite) is the same crystal and is not made again
    (:mod:`~matscreen.tasks.sources.prototype_symmetry`). Only the per-entry tables are
    held, so the stream runs in constant memory. ``prototype``, when given, is the
    already loaded ``spec.prototype``.

    Raises
    ------
    SourceError
        If the prototype or ``sites`` is invalid (raised when iteration starts).
    """
    if prototype is None:
        prototype = load_prototype(spec.prototype, spec.name)
    lists = site_entries(spec, prototype)
    labels = prototype.labels
    first_image = FirstImage(prototype, lists)
    for positions in itertools.product(*(range(len(entries)) for entries in lists)):
        entries = tuple(choices[k] for choices, k in zip(lists, positions, strict=True))
        if spec.distinct_elements:
            element_sets = [entry.element_set for entry in entries]
            if len(frozenset().union(*element_sets)) != sum(map(len, element_sets)):
                continue
        states = _neutral_assignment(entries)
        if states is None and spec.charge_neutral:
            continue
        if first_image.permutations and not first_image.is_first(
            positions, _site_species(prototype, entries)
        ):
            continue
        # Copies, so that a consumer editing a record's metadata cannot alter the tables.
        oxidation = (
            None
            if states is None
            else {label: dict(found) for label, found in zip(labels, states, strict=True)}
        )
        yield Candidate(prototype, entries, oxidation)


def lattice_scale(radii: Sequence[float], contacts: np.ndarray) -> float:
    """Smallest scale of the prototype lattice at which no two sites overlap.

    ``contacts`` is :meth:`Prototype.contact_distances`; two sites overlap when closer than
    the sum of their radii.
    """
    radius = np.asarray(radii, dtype=float)
    return float(np.max((radius[:, None] + radius[None, :]) / contacts))


def tolerance_factor(candidate: Candidate, radii: Sequence[float]) -> float | None:
    """Goldschmidt tolerance factor (r_A + r_X) / (√2 (r_B + r_X)) of a perovskite candidate.

    With several X sites, r_X is their mean radius. None for other prototypes.
    """
    labels = candidate.prototype.perovskite_labels
    if labels is None:
        return None
    by_label: dict[str, list[float]] = {}
    for label, radius in zip(candidate.prototype.site_labels, radii, strict=True):
        by_label.setdefault(label, []).append(radius)
    r_a, r_b, r_x = (sum(by_label[label]) / len(by_label[label]) for label in labels)
    return (r_a + r_x) / (math.sqrt(2.0) * (r_b + r_x))


def iter_prototypes(spec: PrototypeSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Yield a structure record for every candidate of :func:`iter_candidates`.

    Records hold no properties (nothing is known of a hypothetical structure yet); their
    ``extra`` holds the prototype, the site assignment, the oxidation states, the radii and
    lattice parameter, and for perovskites the Goldschmidt tolerance factor. Each record's
    assignment is added to the snapshot. A candidate whose lattice cannot be set becomes a
    :class:`RecordFailure`.

    Raises
    ------
    SourceError
        If the prototype or ``sites`` is invalid.
    """
    prototype = load_prototype(spec.prototype, spec.name)
    snapshot.location = prototype.name if prototype.path is None else str(prototype.path)
    snapshot.database_version = f"pymatgen {pymatgen.core.__version__}"
    snapshot.query.update(
        {
            "prototype": spec.prototype,
            "sites": {label: list(entries) for label, entries in spec.sites.items()},
            "charge_neutral": spec.charge_neutral,
            "distinct_elements": spec.distinct_elements,
            "limit": spec.limit,
            "oxidation_states": "positive: icsd_oxidation_states, negative: "
            "common_oxidation_states",
            "lattice": "touching spheres of Shannon ionic radii (atomic radii if none)",
        }
    )
    if prototype.path is not None:
        snapshot.query["prototype_sha256"] = file_sha256(prototype.path)
    exchanged = exchanged_label_groups(prototype, label_exchanging_permutations(prototype))
    if exchanged:
        # Decorations that only swap these labels are one crystal, made once.
        snapshot.query["equivalent_labels"] = exchanged
    contacts = prototype.contact_distances()
    for row, candidate in enumerate(iter_candidates(spec, prototype), start=1):
        if spec.limit is not None and row > spec.limit:
            return
        source_id = candidate.source_id
        document = {"prototype": prototype.name, "sites": candidate.assignment}
        snapshot.add_document(document)
        try:
            radii, radius_kind = candidate.site_radii()
            scale = lattice_scale(radii, contacts)
            species = candidate.site_species()
            extra: dict[str, Any] = {
                "prototype": prototype.name,
                "sites": candidate.assignment,
                "oxidation_states": candidate.oxidation_states,
                "site_radii": radii,
                "radius_kind": radius_kind,
                "lattice_parameter": scale * prototype.reference_length,
            }
            if prototype.space_group is not None:
                extra["prototype_space_group"] = prototype.space_group
            if prototype.perovskite_labels is not None:
                extra["tolerance_factor"] = (
                    tolerance_factor(candidate, radii) if radius_kind == "shannon_ionic" else None
                )
            record = record_from_dict(
                spec,
                source_id,
                row,
                reduced_formula(species),
                prototype.decorate_dict(species, scale),
                {},
                extra=extra,
            )
        except RecordError as exc:
            yield failure(spec, source_id, row, str(exc))
            continue
        yield record


@lru_cache(maxsize=4096)
def _formula_of(counts: tuple[tuple[str, int], ...]) -> str:
    # What Composition.reduced_formula does with integer amounts, without building the
    # Composition (a third of the time); the cache is bounded, as a stream of decorations
    # rarely repeats a composition.
    formula, _ = reduce_formula(dict(counts))
    return Composition.special_formulas.get(formula, formula)


def reduced_formula(species: Sequence[str]) -> str:
    """pymatgen's reduced formula of a decoration, from its site species (cached by counts)."""
    counts: dict[str, int] = {}
    for symbol in species:
        counts[symbol] = counts.get(symbol, 0) + 1
    return _formula_of(tuple(sorted(counts.items())))
