"""The array path: matminer's features for a whole batch at once, with the same values.

matminer computes its composition features one row at a time in Python (about a
millisecond a row); they are statistics over per-element tables, which numpy computes for
a whole batch in microseconds a row. Structure features that depend only on the geometry
of a cell up to its scale and on which sites hold the same element — the space group of a
decorated prototype, the effective coordination number of each of its sites — are
computed once per such *family* of cells and shared by every member.

Every value here equals what the featurizer object itself returns (tests compare both at
rtol 1e-9 on real and on decorated structures). A cell whose symmetry or coordination
might depend on its scale gets its own (:mod:`.families`). Rows the array path cannot
take — a disordered site, an oxidation state, a dummy species, more than ``MAX_SITES``
sites, a structure a featurizer fails on — are left to the featurizers themselves, row by
row, so that their values and their error messages stay matminer's. A featurization with
any featurizer or option not known here runs entirely row by row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from matscreen.tasks.featurize.cells import (
    Z_MAX,
    Cells,
    Unsupported,
    element_table,
    property_table,
    read_cells,
)
from matscreen.tasks.featurize.families import (
    coordination_element_property,
    global_symmetry,
    site_role_property,
)
from matscreen.tasks.featurize.presets import build_featurizers

if TYPE_CHECKING:
    from matminer.featurizers.base import BaseFeaturizer

# -- composition featurizers -------------------------------------------------------------


def _values(featurizer: BaseFeaturizer, prop: str, cells: Cells) -> np.ndarray:
    """Property ``prop`` of each cell's elements (n, k), NaN-free padding."""
    values = property_table(featurizer, prop)[cells.elements]
    return np.where(cells.mask, values, 0.0)


def _has_nan(featurizer: BaseFeaturizer, prop: str, cells: Cells) -> np.ndarray:
    table = property_table(featurizer, prop)
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
    table = property_table(featurizer, prop)
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
            for z in range(1, Z_MAX + 1)
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
    "SiteRoleProperty": site_role_property,
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
