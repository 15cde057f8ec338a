"""A batch of structure dicts as arrays: the input of the array path.

Only cells whose every site is one plain element, fully occupied, with no oxidation state
or spin, and that have at most ``MAX_SITES`` sites, are read; the others are left to the
featurizers themselves. Each cell gets a *family* key: its geometry up to scale, which of
its sites hold the same element, and its magnetic moments — the cells that a structure
feature depending only on those (space group, coordination numbers) treats alike.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matminer.featurizers.base import BaseFeaturizer

#: Cells with more sites go row by row (their family computations would not be cheap).
MAX_SITES = 64

#: Digits kept of scale-free lattice vectors and fractional coordinates in a family key.
KEY_DIGITS = 6

#: Largest atomic number in the element tables.
Z_MAX = 118


@functools.cache
def _symbol_to_z() -> dict[str, int]:
    from pymatgen.core import Element

    return {Element.from_Z(z).symbol: z for z in range(1, Z_MAX + 1)}


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
    groups = []
    for size, cells in _parse_cells(structure_dicts).items():
        matrices = np.asarray([c[3] for c in cells], dtype=np.float64)
        frac = np.asarray([c[4] for c in cells], dtype=np.float64).reshape(-1, size, 3)
        cell_volumes = np.abs(
            np.einsum("ij,ij->i", np.cross(matrices[:, 0], matrices[:, 1]), matrices[:, 2])
        )
        good = (cell_volumes > 0) & np.isfinite(frac).all(axis=(1, 2)) & np.isfinite(cell_volumes)
        z = np.asarray([c[2] for c in cells], dtype=np.int64)
        moments = np.asarray([c[5] for c in cells], dtype=np.int64)
        keep = np.flatnonzero(good)
        if len(keep):
            groups.append(
                (
                    [cells[i] for i in keep],
                    matrices[keep],
                    cell_volumes[keep],
                    frac[keep],
                    z[keep],
                    moments[keep],
                )
            )
    width = max((int(_distinct(g[4]).max()) for g in groups), default=1)
    rows: list[int] = []
    dicts: list[dict[str, Any]] = []
    site_z: list[np.ndarray] = []
    families: list[Any] = []
    lattices, volumes, elements, amounts = [], [], [], []
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


def _parse_cells(structure_dicts: Sequence[dict[str, Any]]) -> dict[int, list[tuple[Any, ...]]]:
    """``(row, dict, site numbers, matrix, fractional coordinates, moments)`` by site count."""
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
    return parsed


def element_table(lookup: Callable[[Any], Any]) -> np.ndarray:
    """``lookup(Element)`` for Z = 0..118 as a float array; NaN where it has no number."""
    from pymatgen.core import Element

    table = np.full(Z_MAX + 1, np.nan)
    for z in range(1, Z_MAX + 1):
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


def property_table(featurizer: BaseFeaturizer, prop: str, source: Any = None) -> np.ndarray:
    """Elemental property ``prop`` of Z = 0..118 from the featurizer's own data source
    (``source`` if given), built once per featurizer object."""
    cache = featurizer.__dict__.setdefault("_matscreen_tables", {})
    if prop not in cache:
        source = featurizer.data_source if source is None else source
        cache[prop] = element_table(lambda e: source.get_elemental_property(e, prop))
    return cache[prop]
