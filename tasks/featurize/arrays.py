"""The array path: matminer's features for a whole batch at once, with the same values.

matminer computes its composition features one row at a time in Python (about a
millisecond a row); they are statistics over per-element tables, which numpy computes for
a whole batch in microseconds a row. Structure features that depend only on the geometry
of a cell up to its scale and on which sites hold the same element — the space group of a
decorated prototype, the effective coordination number of each of its sites — are
computed once per such *family* of cells and shared by every member.

Every value here equals what the featurizer object itself returns (tests compare both at
rtol 1e-9 on real and on decorated structures). Rows the array path cannot take — a
disordered site, an oxidation state, a site property, a dummy species, a large cell, a
family whose symmetry or coordination is not scale-free — are left to the featurizers
themselves, row by row, so that their values and their error messages stay matminer's.
A featurization with any featurizer or option not known here runs entirely row by row.
"""

from __future__ import annotations

import functools
import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matscreen.tasks.featurize.presets import build_featurizers

if TYPE_CHECKING:
    from matminer.featurizers.base import BaseFeaturizer
    from pymatgen.core import Structure

#: Cells with more sites go row by row (their family computations would not be cheap).
MAX_SITES = 64

#: Number of families whose structure features a process keeps between batches.
FAMILY_CACHE_SIZE = 4096

#: Digits kept of scale-free lattice vectors and fractional coordinates in a family key.
KEY_DIGITS = 6

_Z_MAX = 118


@functools.cache
def _symbol_to_z() -> dict[str, int]:
    from pymatgen.core import Element

    return {Element.from_Z(z).symbol: z for z in range(1, _Z_MAX + 1)}


@dataclass
class Cells:
    """The batch rows the array path takes, as arrays.

    Attributes
    ----------
    rows
        Position of each cell in the batch.
    dicts
        Each cell's ``Structure.as_dict()``.
    site_z
        Atomic number of every site, one array per cell.
    lattices
        Lattice vectors, shape (n, 3, 3).
    volumes
        Cell volumes in Å^3.
    elements, amounts
        Distinct atomic numbers of each cell and their counts, padded with 0 to the
        largest number of elements in the batch, shape (n, k).
    families
        Family key of each cell: scale-free geometry and which sites share an element.
    """

    rows: list[int]
    dicts: list[dict[str, Any]]
    site_z: list[np.ndarray]
    lattices: np.ndarray
    volumes: np.ndarray
    elements: np.ndarray
    amounts: np.ndarray
    families: list[str]

    @property
    def mask(self) -> np.ndarray:
        """True where ``elements`` holds an element (not padding)."""
        return self.amounts > 0


#: Codes of the magnetic moments (``magmom`` site property) seen, so that a family key
#: holds each site's moment: spglib finds a different symmetry for each set of moments.
_MOMENTS: dict[tuple[float, ...], int] = {}


def _moment(value: Any) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return tuple(float(v) + 0.0 for v in values)  # + 0.0: -0.0 is 0.0, as for spglib


def _site_numbers(structure_dict: dict[str, Any]) -> tuple[list[int], list[int]] | None:
    """Atomic numbers of the sites and the codes of their magnetic moments (-1 for all
    sites of a cell without any; a site without one in a cell with some has moment 0, as
    in pymatgen's SpacegroupAnalyzer), or None if a site is not one plain element, fully
    occupied, without oxidation state or spin. No featurizer here reads other site
    properties."""
    z_of = _symbol_to_z()
    numbers, moments = [], []
    for site in structure_dict["sites"]:
        species = site["species"]
        if len(species) != 1:
            return None
        (entry,) = species
        if entry.get("occu", 1) != 1 or entry.get("oxidation_state") or entry.get("spin"):
            return None
        z = z_of.get(entry["element"])
        if z is None:
            return None
        numbers.append(z)
        moments.append((site.get("properties") or {}).get("magmom"))
    if all(m is None for m in moments):
        return numbers, [-1] * len(numbers)
    codes = [_MOMENTS.setdefault(_moment(0.0 if m is None else m), len(_MOMENTS)) for m in moments]
    return numbers, codes


def _family_keys(
    lattices: np.ndarray, volumes: np.ndarray, frac: np.ndarray, z: np.ndarray, moments: np.ndarray
) -> list[str]:
    """Family key of each cell of one size: its lattice vectors over ``volume ** (1/3)``,
    its fractional coordinates (wrapped into [0, 1)), both to ``KEY_DIGITS`` digits, and
    which sites hold the same element (each site's first site with its element), and
    the sites' magnetic moments."""
    n = len(volumes)
    shape = np.round(lattices / np.cbrt(volumes)[:, None, None], KEY_DIGITS) + 0.0  # no -0.0
    coords = np.round(np.mod(np.round(frac, KEY_DIGITS), 1.0), KEY_DIGITS) + 0.0
    pattern = (z[:, :, None] == z[:, None, :]).argmax(axis=2).astype(np.float64)
    rows = np.concatenate([shape.reshape(n, -1), coords.reshape(n, -1), pattern, moments], axis=1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    keys = [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in unique]
    return [keys[i] for i in inverse.ravel()]


def _distinct(z: np.ndarray) -> np.ndarray:
    """Number of distinct atomic numbers in each row."""
    return 1 + (np.diff(np.sort(z, axis=1), axis=1) != 0).sum(axis=1)


def _compositions(z: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct atomic numbers of each cell (ascending) and their counts, padded to ``width``."""
    ordered = np.sort(z, axis=1)
    new = np.ones(ordered.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slot = np.cumsum(new, axis=1) - 1
    rows = np.repeat(np.arange(len(z)), z.shape[1]).reshape(z.shape)
    elements = np.zeros((len(z), width), dtype=np.int64)
    amounts = np.zeros((len(z), width), dtype=np.float64)
    elements[rows, slot] = ordered
    np.add.at(amounts, (rows, slot), 1.0)
    return elements, amounts


def read_cells(structure_dicts: Sequence[dict[str, Any]]) -> Cells:
    """Parse the structures the array path can take; the others are left out of ``rows``."""
    parsed: dict[int, list[tuple[Any, ...]]] = {}
    for row, d in enumerate(structure_dicts):
        try:
            lattice = d["lattice"]
            if not all(lattice.get("pbc", (True, True, True))):
                continue
            if not 0 < len(d["sites"]) <= MAX_SITES:
                continue
            parsed_sites = _site_numbers(d)
            if parsed_sites is None:
                continue
            z, moments = parsed_sites
            matrix = [[float(x) for x in vector] for vector in lattice["matrix"]]
            frac = [[float(x) for x in site["abc"]] for site in d["sites"]]
            if len(matrix) != 3 or any(len(v) != 3 for v in matrix + frac):
                continue
        except (KeyError, TypeError, AttributeError, ValueError):
            continue  # malformed: the row-by-row path reports it
        parsed.setdefault(len(z), []).append((row, d, z, matrix, frac, moments))
    groups = []
    for size, cells in parsed.items():
        matrices = np.asarray([c[3] for c in cells], dtype=np.float64)
        frac = np.asarray([c[4] for c in cells], dtype=np.float64).reshape(-1, size, 3)
        volumes = np.abs(
            np.einsum("ij,ij->i", np.cross(matrices[:, 0], matrices[:, 1]), matrices[:, 2])
        )
        good = (volumes > 0) & np.isfinite(frac).all(axis=(1, 2)) & np.isfinite(volumes)
        z = np.asarray([c[2] for c in cells], dtype=np.int64)
        moments = np.asarray([c[5] for c in cells], dtype=np.int64)
        keep = np.flatnonzero(good)
        if len(keep):
            groups.append(
                (
                    [cells[i] for i in keep],
                    matrices[keep],
                    volumes[keep],
                    frac[keep],
                    z[keep],
                    moments[keep],
                )
            )
    width = max((int(_distinct(g[4]).max()) for g in groups), default=1)
    rows, dicts, site_z, lattices, volumes, families, elements, amounts = ([] for _ in range(8))
    for cells, matrices, vols, frac, z, moments in groups:
        rows += [c[0] for c in cells]
        dicts += [c[1] for c in cells]
        site_z += list(z)
        lattices.append(matrices)
        volumes.append(vols)
        families += _family_keys(matrices, vols, frac, z, moments)
        e, a = _compositions(z, width)
        elements.append(e)
        amounts.append(a)
    if not rows:
        empty = np.zeros((0, 1))
        return Cells(
            [], [], [], np.zeros((0, 3, 3)), np.zeros(0), empty.astype(np.int64), empty, []
        )
    return Cells(
        rows=rows,
        dicts=dicts,
        site_z=site_z,
        lattices=np.concatenate(lattices),
        volumes=np.concatenate(volumes),
        elements=np.concatenate(elements),
        amounts=np.concatenate(amounts),
        families=families,
    )


def element_table(lookup: Callable[[Any], Any]) -> np.ndarray:
    """``lookup(Element)`` for Z = 0..118 as a float array; NaN where it has no number."""
    from pymatgen.core import Element

    table = np.full(_Z_MAX + 1, np.nan)
    for z in range(1, _Z_MAX + 1):
        try:
            with warnings.catch_warnings():  # pymatgen warns of every superheavy gap
                warnings.simplefilter("ignore")
                value = lookup(Element.from_Z(z))
        except (KeyError, AttributeError, ValueError):
            continue
        if value is not None:
            table[z] = float(value)
    return table


class Unsupported(Exception):
    """A featurizer, or an option of one, that the array path does not compute."""


# -- composition featurizers -------------------------------------------------------------


def _property_table(featurizer: BaseFeaturizer, prop: str, source: Any = None) -> np.ndarray:
    """Elemental property ``prop`` of Z = 0..118 from the featurizer's own data source
    (``source`` if given), built once per featurizer object."""
    cache = featurizer.__dict__.setdefault("_matscreen_tables", {})
    if prop not in cache:
        source = featurizer.data_source if source is None else source
        cache[prop] = element_table(lambda e: source.get_elemental_property(e, prop))
    return cache[prop]


def _values(featurizer: BaseFeaturizer, prop: str, cells: Cells) -> np.ndarray:
    """Property ``prop`` of each cell's elements (n, k), NaN-free padding."""
    values = _property_table(featurizer, prop)[cells.elements]
    return np.where(cells.mask, values, 0.0)


def _has_nan(featurizer: BaseFeaturizer, prop: str, cells: Cells) -> np.ndarray:
    table = _property_table(featurizer, prop)
    return (np.isnan(table[cells.elements]) & cells.mask).any(axis=1)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (values * weights).sum(axis=1) / weights.sum(axis=1)


def _statistic(stat: str, values: np.ndarray, nan_rows: np.ndarray, cells: Cells) -> np.ndarray:
    """matminer's ``PropertyStats`` statistic over each cell's elements, weighted by amount."""
    mask, weights = cells.mask, cells.amounts
    if stat in ("minimum", "maximum", "range"):
        low = np.where(mask, values, np.inf).min(axis=1)
        high = np.where(mask, values, -np.inf).max(axis=1)
        out = {"minimum": low, "maximum": high, "range": high - low}[stat]
        return np.where(nan_rows, np.nan, out)
    if stat == "mean":
        return np.where(nan_rows, np.nan, _weighted_mean(values, weights))
    if stat == "avg_dev":
        mean = _weighted_mean(values, weights)
        return np.where(nan_rows, np.nan, _weighted_mean(np.abs(values - mean[:, None]), weights))
    if stat == "mode":
        top = weights.max(axis=1, keepdims=True)
        most = np.isclose(weights, top) & mask  # as PropertyStats.mode: ties by isclose
        return np.where(most, values, np.inf).min(axis=1)
    raise Unsupported(f"statistic {stat}")


def _mode_nan(featurizer: BaseFeaturizer, prop: str, cells: Cells) -> np.ndarray:
    table = _property_table(featurizer, prop)
    weights = cells.amounts
    most = np.isclose(weights, weights.max(axis=1, keepdims=True)) & cells.mask
    return (np.isnan(table[cells.elements]) & most).any(axis=1)


def element_property(featurizer: BaseFeaturizer, cells: Cells) -> np.ndarray:
    """``ElementProperty``: statistics of elemental properties, property by property."""
    columns = []
    for prop in featurizer.features:
        values = _values(featurizer, prop, cells)
        nan_rows = _has_nan(featurizer, prop, cells)
        for stat in featurizer.stats:
            column = _statistic(stat, values, nan_rows, cells)
            if stat == "mode":
                column = np.where(_mode_nan(featurizer, prop, cells), np.nan, column)
            columns.append(column)
    return np.column_stack(columns)


def stoichiometry(featurizer: BaseFeaturizer, cells: Cells) -> np.ndarray:
    """``Stoichiometry``: p-norms of the atomic fractions (and atoms per formula unit)."""
    amounts = cells.amounts
    total = amounts.sum(axis=1)
    columns = []
    if featurizer.num_atoms:
        gcd = np.gcd.reduce(amounts.astype(np.int64), axis=1)
        columns.append(total / gcd)
    fractions = amounts / total[:, None]
    for p in featurizer.p_list:
        if p < 0:
            raise Unsupported("negative p")
        if p == 0:
            columns.append(cells.mask.sum(axis=1).astype(float))
        else:
            columns.append(np.where(cells.mask, fractions**p, 0.0).sum(axis=1) ** (1.0 / p))
    return np.column_stack(columns)


def valence_orbital(featurizer: BaseFeaturizer, cells: Cells) -> np.ndarray:
    """``ValenceOrbital``: mean valence electrons per orbital, and their fractions."""
    weights = cells.amounts

    def mean(prop: str) -> np.ndarray:
        values = _values(featurizer, prop, cells)
        return np.where(_has_nan(featurizer, prop, cells), np.nan, _weighted_mean(values, weights))

    average = [mean(f"N{orbital}Valence") for orbital in featurizer.orbitals]
    parts = {"avg": average}
    if "frac" in featurizer.props:
        total = mean("NValence")
        parts["frac"] = [a / total for a in average]
    return np.column_stack([column for prop in featurizer.props for column in parts[prop]])


def _oxidation_table(featurizer: BaseFeaturizer) -> np.ndarray:
    """The data source's oxidation states of Z = 0..118, one row each, NaN-padded."""
    cache = featurizer.__dict__.setdefault("_matscreen_tables", {})
    if "OxidationStates" not in cache:
        from pymatgen.core import Element

        states = [[]] + [
            list(featurizer.data_source.get_oxidation_states(Element.from_Z(z)))
            for z in range(1, _Z_MAX + 1)
        ]
        table = np.full((len(states), max(len(s) for s in states)), np.nan)
        for z, row in enumerate(states):
            table[z, : len(row)] = row
        cache["OxidationStates"] = table
    return cache["OxidationStates"]


#: Largest number of oxidation-state combinations evaluated at once.
_COMBINATIONS_PER_CHUNK = 4_000_000


def _neutral_possible(states: np.ndarray, elements: np.ndarray, amounts: np.ndarray) -> np.ndarray:
    """Whether some choice of one listed oxidation state per element sums to zero over the
    cell's atoms, as ``IonProperty(fast=True)`` tests it (``np.isclose(sum, 0)``), for
    cells with the same number of elements (no padding)."""
    n, k = elements.shape
    listed = (~np.isnan(states)).sum(axis=1)
    widths = [int(listed[elements[:, j]].max()) for j in range(k)]  # states are NaN-padded
    step = max(1, _COMBINATIONS_PER_CHUNK // math.prod(widths))
    out = np.zeros(n, dtype=bool)
    for start in range(0, n, step):
        chunk = slice(start, start + step)
        sums = states[elements[chunk, 0], : widths[0]] * amounts[chunk, 0, None]
        for j in range(1, k):  # every combination, flattened per row
            charges = states[elements[chunk, j], : widths[j]] * amounts[chunk, j, None]
            sums = (sums[:, :, None] + charges[:, None, :]).reshape(len(sums), -1)
        # np.isclose(s, 0) is |s| <= 1e-8; NaN (a padded state) is never close.
        out[chunk] = (np.abs(sums) <= 1e-8).any(axis=1)
    return out


def ion_property(featurizer: BaseFeaturizer, cells: Cells) -> np.ndarray:
    """``IonProperty`` with ``fast=True``: neutral compound possible, max and mean ionic
    character (1 - exp(-(X_a - X_b)^2 / 4) over element pairs)."""
    if not featurizer.fast:
        raise Unsupported("IonProperty(fast=False) guesses oxidation states with pymatgen")
    states = _oxidation_table(featurizer)
    possible = np.ones(len(cells.rows))
    counts = cells.mask.sum(axis=1)
    for k in np.unique(counts):
        if k < 2:
            continue  # one element: matminer says a compound is possible
        rows = np.flatnonzero(counts == k)
        # Elements are ascending with padding last, so the first k slots hold them.
        found = _neutral_possible(states, cells.elements[rows, :k], cells.amounts[rows, :k])
        possible[rows] = found
    electronegativity = _values(featurizer, "X", cells)
    nan_rows = _has_nan(featurizer, "X", cells)
    fractions = cells.amounts / cells.amounts.sum(axis=1, keepdims=True)
    difference = electronegativity[:, :, None] - electronegativity[:, None, :]
    character = 1.0 - np.exp(-0.25 * difference**2)
    width = cells.elements.shape[1]
    pairs = np.triu(np.ones((width, width), dtype=bool), k=1)
    pairs = pairs[None] & cells.mask[:, :, None] & cells.mask[:, None, :]
    single = cells.mask.sum(axis=1) < 2
    largest = np.where(pairs, character, -np.inf).max(axis=1).max(axis=1)
    mean = np.where(pairs, fractions[:, :, None] * fractions[:, None, :] * character, 0.0)
    mean = mean.sum(axis=(1, 2))
    largest = np.where(single, 0.0, np.where(nan_rows, np.nan, largest))
    mean = np.where(single, 0.0, np.where(nan_rows, np.nan, mean))
    return np.column_stack([possible, largest, mean])


# -- structure featurizers ---------------------------------------------------------------


@functools.cache
def _unit_factors() -> tuple[float, float]:
    from pymatgen.core.units import Length, Mass

    return float(Mass(1.0, "amu").to("g")), float(Length(1, "ang").to("cm")) ** 3


@functools.cache
def _atomic_masses() -> np.ndarray:
    return element_table(lambda e: e.atomic_mass)


@functools.cache
def _atomic_radii() -> np.ndarray:
    return element_table(lambda e: e.atomic_radius)


def density_features(featurizer: BaseFeaturizer, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """``DensityFeatures``: density (g/cm^3), volume per atom, packing fraction of atomic
    spheres. Cells with an element without atomic radius go row by row (matminer raises)."""
    to_gram, cubic_cm = _unit_factors()
    n_sites = np.array([len(z) for z in cells.site_z], dtype=float)
    columns, usable = [], np.ones(len(cells.rows), dtype=bool)
    for feature in featurizer.features:
        if feature == "density":
            weight = np.where(cells.mask, _atomic_masses()[cells.elements] * cells.amounts, 0.0)
            columns.append(weight.sum(axis=1) * to_gram / (cells.volumes * cubic_cm))
        elif feature == "vpa":
            columns.append(cells.volumes / n_sites)
        elif feature == "packing fraction":
            radius = _atomic_radii()[cells.elements]
            usable &= ~(np.isnan(radius) & cells.mask).any(axis=1)
            cubes = np.where(cells.mask, np.nan_to_num(radius) ** 3 * cells.amounts, 0.0)
            columns.append(4 * math.pi * cubes.sum(axis=1) / (3 * cells.volumes))
        else:
            raise Unsupported(f"DensityFeatures feature {feature}")
    return np.column_stack(columns), usable


class _Families:
    """Structure features per family, kept across batches (least recently used dropped)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, str], Any] = OrderedDict()

    def get(self, featurizer: BaseFeaturizer, key: str) -> Any:
        slot = (id(featurizer), key)
        if slot in self._items:
            self._items.move_to_end(slot)
        return self._items.get(slot)

    def put(self, featurizer: BaseFeaturizer, key: str, value: Any) -> None:
        self._items[(id(featurizer), key)] = value
        if len(self._items) > self.size:
            self._items.popitem(last=False)


_FAMILIES = _Families(FAMILY_CACHE_SIZE)


def _structure(d: dict[str, Any]) -> Structure:
    from pymatgen.core import Structure

    return Structure.from_dict(d)


def _family_groups(cells: Cells) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(cells.families):
        groups.setdefault(key, []).append(i)
    return groups


def _shared(
    featurizer: BaseFeaturizer,
    cells: Cells,
    groups: dict[str, list[int]],
    compute: Callable[[Structure], tuple[Any, bool]],
) -> dict[int, Any]:
    """Compute a structure feature once per group where it holds for the whole group.

    ``compute(structure)`` returns the value and whether it holds for every member of the
    structure's group; a value that does not is used for that structure alone, and the
    next member is tried. A structure on which ``compute`` raises is left out (the row-by-
    row path reports it). Returns cell position -> value.
    """
    values: dict[int, Any] = {}
    for key, members in groups.items():
        cached = _FAMILIES.get(featurizer, key)
        if cached is not None:
            values.update(dict.fromkeys(members, cached))
            continue
        for position, member in enumerate(members):
            try:
                value, holds = compute(_structure(cells.dicts[member]))
            except Exception:  # noqa: BLE001, S112 - reported per record by the row path
                continue
            if holds:
                _FAMILIES.put(featurizer, key, value)
                values.update(dict.fromkeys(members[position:], value))
                break
            values[member] = value
    return values


def _assemble(values: dict[int, Any], n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.full((n, width), np.nan)
    usable = np.zeros(n, dtype=bool)
    for position, row in values.items():
        out[position] = row
        usable[position] = True
    return out, usable


#: spglib tolerance (Å) at which a family's symmetry must already be complete: a cell whose
#: positions are exactly symmetric keeps its space group at every scale.
TIGHT_SYMPREC = 1e-5


def global_symmetry(featurizer: BaseFeaturizer, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """``GlobalSymmetryFeatures`` once per family, for families whose symmetry does not
    depend on the tolerance (the space group at ``TIGHT_SYMPREC`` is the default one's);
    other cells each on their own."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if "crystal_system" in featurizer.features:
        raise Unsupported("the crystal system as a name is not a number")

    def compute(structure: Structure) -> tuple[list[float], bool]:
        values = [float(v) for v in featurizer.featurize(structure)]
        tight = SpacegroupAnalyzer(structure, symprec=TIGHT_SYMPREC).get_space_group_number()
        return values, tight == SpacegroupAnalyzer(structure).get_space_group_number()

    values = _shared(featurizer, cells, _family_groups(cells), compute)
    return _assemble(values, len(cells.rows), len(featurizer.feature_labels()))


#: Neighbour distances kept per family, in units of ``volume ** (1/3)``: enough for cells
#: down to ``ECON_CUTOFF / SHELL_REACH`` Å (3 Å); smaller ones are computed each on its own.
SHELL_REACH = 2.0


def _shells(structure: Structure) -> tuple[np.ndarray, bool]:
    """Every neighbour distance of every site within ``SHELL_REACH`` scale units, sorted,
    in units of the cell's scale (``volume ** (1/3)``); shared by the family."""
    scale = structure.volume ** (1.0 / 3.0)
    *_, distances = structure.get_neighbor_list(SHELL_REACH * scale)
    return np.sort(distances / scale), True


def coordination_element_property(
    featurizer: BaseFeaturizer, cells: Cells
) -> tuple[np.ndarray, np.ndarray]:
    """matscreen's ``CoordinationElementProperty`` with effective coordination numbers.

    Within a family, which neighbours lie inside the cutoff changes only where a scaled
    copy moves a neighbour shell across it: cells of a family are grouped by how many
    neighbours lie inside (counted on the family's normalized neighbour distances), the
    numbers are computed once per group where they are settled
    (``settled_coordination``), and the element properties as arrays.
    """
    from matscreen.tasks.featurize.site_resolved import site_statistics

    if featurizer.coordination != "econ":
        raise Unsupported("CrystalNN coordination depends on the elements")
    tables = {p: _property_table(featurizer, p, featurizer._magpie) for p in featurizer.properties}

    families = _family_groups(cells)
    shells = _shared(featurizer, cells, {f"{k}:shells": m for k, m in families.items()}, _shells)
    reach = featurizer.ECON_CUTOFF / np.cbrt(cells.volumes)  # the cutoff in scale units
    groups: dict[str, list[int]] = {}
    for key, members in families.items():
        for member in members:
            if member not in shells:
                continue
            if reach[member] < SHELL_REACH:
                inside = int(np.searchsorted(shells[member], reach[member], side="right"))
                groups.setdefault(f"{key}:{inside}", []).append(member)
            else:
                groups[f"{key}:alone:{member}"] = [member]  # never cached: keys are unique
    numbers = _shared(featurizer, cells, groups, featurizer.settled_coordination)
    out, usable = _assemble({}, len(cells.rows), len(featurizer.feature_labels()))
    by_numbers: dict[bytes, list[int]] = {}
    for member, cn in numbers.items():
        by_numbers.setdefault(cn.tobytes(), []).append(member)
    for members in by_numbers.values():
        cn = numbers[members[0]]
        if len({len(cells.site_z[m]) for m in members}) != 1:
            raise AssertionError("cells with the same coordination numbers differ in size")
        site_z = np.stack([cells.site_z[m] for m in members])
        out[members] = site_statistics(cn, [tables[prop][site_z] for prop in featurizer.properties])
        usable[members] = True
    return out, usable


#: Featurizer class name -> array implementation, for matminer's classes of that name and
#: matscreen's own. Composition ones return the values; structure ones return the values
#: and which rows they could compute. An option an implementation does not cover raises
#: :class:`Unsupported`.
ARRAY_FEATURIZERS: dict[str, Callable[..., Any]] = {
    "ElementProperty": element_property,
    "Stoichiometry": stoichiometry,
    "ValenceOrbital": valence_orbital,
    "IonProperty": ion_property,
    "DensityFeatures": density_features,
    "GlobalSymmetryFeatures": global_symmetry,
    "CoordinationElementProperty": coordination_element_property,
}

_PACKAGES = ("matminer.featurizers.", "matscreen.tasks.featurize.")


def _known(path: str) -> bool:
    module, _, name = path.rpartition(".")
    return name in ARRAY_FEATURIZERS and (module + ".").startswith(_PACKAGES)


def _implementation(featurizer: BaseFeaturizer) -> Callable[..., Any]:
    cls = type(featurizer)
    if not _known(f"{cls.__module__}.{cls.__name__}"):
        raise Unsupported(cls.__name__)
    return ARRAY_FEATURIZERS[cls.__name__]


def supports(config: dict[str, Any]) -> bool:
    """Whether every featurizer of a featurization has an array implementation (by class;
    options are checked when a batch is computed). Builds nothing, so a featurization
    whose classes only the featurizer child process can import is not taken."""
    return all(_known(item["cls"]) for item in config["featurizers"])


def featurize_cells(
    structure_dicts: Sequence[dict[str, Any]], config: dict[str, Any]
) -> tuple[list[int], np.ndarray]:
    """Compute a featurization for the batch rows the array path can take.

    Returns
    -------
    rows, values
        The batch positions computed here and their feature rows; every other position is
        for the featurizers themselves, row by row.
    """
    featurizers = build_featurizers(config)
    cells = read_cells(structure_dicts)
    if not cells.rows:
        return [], np.zeros((0, 0))
    usable = np.ones(len(cells.rows), dtype=bool)
    blocks = []
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for _, featurizer in featurizers:
                result = _implementation(featurizer)(featurizer, cells)
                if isinstance(result, tuple):
                    result, computed = result
                    usable &= computed
                blocks.append(result)
    except Unsupported:
        return [], np.zeros((0, 0))
    values = np.hstack(blocks)[usable]
    rows = [row for row, ok in zip(cells.rows, usable, strict=True) if ok]
    return rows, values
