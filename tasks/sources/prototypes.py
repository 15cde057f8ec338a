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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np
import pymatgen.core
from pymatgen.core import Composition, Element
from pymatgen.core.composition import reduce_formula

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.sources.base import (
    Item,
    Plan,
    SnapshotBuilder,
    failure,
    record_from_dict,
)
from matscreen.tasks.sources.ions import (
    allowed_oxidation_states,
    atomic_radius,
    icsd_occurrence,
    shannon_radius,
)
from matscreen.tasks.sources.prototype_cells import Prototype, load_prototype
from matscreen.tasks.sources.prototype_symmetry import (
    FirstImage,
    exchanged_label_groups,
    label_exchanging_permutations,
)
from matscreen.tasks.spec import PrototypeSourceSpec

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*)")


_ENTRY = re.compile(r"(?:[A-Z][a-z]?\d*)+")


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
    occurrence = icsd_occurrence()
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
    for plan in plan_prototypes(spec, snapshot):
        yield plan.build()


def plan_prototypes(spec: PrototypeSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Plan]:
    """:func:`iter_prototypes` one step short: a :class:`Plan` per candidate, its site
    assignment (added to the snapshot as it is planned) and how to build its record.

    Planning a candidate costs a few microseconds; building it (radii, lattice, structure,
    record) most of the read. A screen that finished some chunks in an earlier run plans
    them and builds none of their records.
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
        document = {"prototype": prototype.name, "sites": candidate.assignment}
        snapshot.add_document(document)
        yield Plan(candidate.source_id, document, partial(_build, spec, candidate, row, contacts))


def _build(spec: PrototypeSourceSpec, candidate: Candidate, row: int, contacts: Any) -> Item:
    """The record of a planned candidate, or the failure that it cannot be built."""
    prototype = candidate.prototype
    source_id = candidate.source_id
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
        return record_from_dict(
            spec,
            source_id,
            row,
            reduced_formula(species),
            prototype.decorate_dict(species, scale),
            {},
            extra=extra,
        )
    except RecordError as exc:
        return failure(spec, source_id, row, str(exc))


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
