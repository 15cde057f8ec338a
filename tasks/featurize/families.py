"""Structure features computed once per family of cells (see :mod:`.cells`).

A decorated prototype and its copies at other scales, with other elements in the same
arrangement, share a space group and coordination numbers whenever these do not depend on
the scale; those are computed on one member and kept per process for later batches. A
value that might depend on the scale (a symmetry found only thanks to the tolerance, a
bond weight near the cut) is used for its own cell only.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from matscreen.tasks.featurize.cells import Cells, Unsupported, property_table

if TYPE_CHECKING:
    from matminer.featurizers.base import BaseFeaturizer
    from pymatgen.core import Structure

#: Number of families whose structure features a process keeps between batches.
FAMILY_CACHE_SIZE = 4096


class _Families:
    """Structure features per family, kept across batches (least recently used dropped).

    Entries are keyed by the featurizer object and hold it, so that its id is not reused
    by another featurizer while they live; a lock keeps the worker's threads apart.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[int, str], tuple[BaseFeaturizer, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, featurizer: BaseFeaturizer, key: str) -> Any:
        slot = (id(featurizer), key)
        with self._lock:
            if slot not in self._items:
                return None
            self._items.move_to_end(slot)
            return self._items[slot][1]

    def put(self, featurizer: BaseFeaturizer, key: str, value: Any) -> None:
        with self._lock:
            self._items[(id(featurizer), key)] = (featurizer, value)
            if len(self._items) > self.size:
                self._items.popitem(last=False)


_FAMILIES = _Families(FAMILY_CACHE_SIZE)


def _structure(d: dict[str, Any]) -> Structure:
    from pymatgen.core import Structure

    return Structure.from_dict(d)


def family_groups(cells: Cells) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(cells.families):
        groups.setdefault(key, []).append(i)
    return groups


def _shared(
    featurizer: BaseFeaturizer,
    cells: Cells,
    groups: dict[str, list[int]],
    compute: Callable[[Structure], tuple[Any, bool]],
    keep: bool = True,
) -> dict[int, Any]:
    """Compute a structure feature once per group where it holds for the whole group.

    ``compute(structure)`` returns the value and whether it holds for every member of the
    structure's group; a value that does not is used for that structure alone, and the
    next member is tried. A structure on which ``compute`` raises is left out (the row-by-
    row path reports it). Values that hold are kept for later batches under the group's
    key unless ``keep`` is False. Returns cell position -> value.
    """
    values: dict[int, Any] = {}
    for key, members in groups.items():
        cached = _FAMILIES.get(featurizer, key) if keep else None
        if cached is not None:
            values.update(dict.fromkeys(members, cached))
            continue
        for position, member in enumerate(members):
            try:
                value, holds = compute(_structure(cells.dicts[member]))
            except Exception:  # noqa: BLE001, S112 - reported per record by the row path
                continue
            if holds:
                if keep:
                    _FAMILIES.put(featurizer, key, value)
                values.update(dict.fromkeys(members[position:], value))
                break
            values[member] = value
    return values


def _rows(values: dict[int, Any], n: int, width: int) -> tuple[np.ndarray, np.ndarray]:
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

    values = _shared(featurizer, cells, family_groups(cells), compute)
    return _rows(values, len(cells.rows), len(featurizer.feature_labels()))


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
    tables = {p: property_table(featurizer, p, featurizer._magpie) for p in featurizer.properties}

    families = family_groups(cells)
    shells = _shared(featurizer, cells, {f"{k}:shells": m for k, m in families.items()}, _shells)
    reach = featurizer.ECON_CUTOFF / np.cbrt(cells.volumes)  # the cutoff in scale units
    groups: dict[str, list[int]] = {}
    alone: dict[str, list[int]] = {}  # cells smaller than the shells reach: each its own
    for key, members in families.items():
        for member in members:
            if member not in shells:
                continue
            if reach[member] < SHELL_REACH:
                inside = int(np.searchsorted(shells[member], reach[member], side="right"))
                groups.setdefault(f"{key}:{inside}", []).append(member)
            else:
                alone[str(member)] = [member]
    numbers = _shared(featurizer, cells, groups, featurizer.settled_coordination)
    numbers |= _shared(featurizer, cells, alone, featurizer.settled_coordination, keep=False)
    out, usable = _rows({}, len(cells.rows), len(featurizer.feature_labels()))
    by_numbers: dict[tuple[int, bytes], list[int]] = {}
    for member, cn in numbers.items():
        by_numbers.setdefault((len(cn), cn.tobytes()), []).append(member)
    for members in by_numbers.values():
        cn = numbers[members[0]]
        site_z = np.stack([cells.site_z[m] for m in members])
        out[members] = site_statistics(cn, [tables[prop][site_z] for prop in featurizer.properties])
        usable[members] = True
    return out, usable


@functools.cache
def _anion_numbers(numbers: frozenset[int]) -> frozenset[int]:
    from pymatgen.core import Element

    from matscreen.tasks.featurize.site_roles import anion_symbols

    symbols = {Element.from_Z(z).symbol: z for z in numbers}
    return frozenset(symbols[s] for s in anion_symbols(frozenset(symbols)))


def site_role_property(featurizer: BaseFeaturizer, cells: Cells) -> tuple[np.ndarray, np.ndarray]:
    """matscreen's ``SiteRoleProperty``: the roles once per family and anion pattern
    (they depend only on the scale-free geometry and on which sites are anions, where
    ``site_roles`` calls them settled), the element properties as arrays."""
    from matscreen.tasks.featurize.site_roles import role_statistics

    tables = np.stack(
        [property_table(featurizer, p, featurizer._magpie) for p in featurizer.properties]
    )
    groups: dict[str, list[int]] = {}
    for i, (key, z) in enumerate(zip(cells.families, cells.site_z, strict=True)):
        anion = np.isin(z, list(_anion_numbers(frozenset(z.tolist()))))
        groups.setdefault(f"{key}:roles:{np.packbits(anion).tobytes().hex()}", []).append(i)

    def compute(structure: Structure) -> tuple[tuple[np.ndarray, ...], bool]:
        *masks, settled = featurizer.roles(structure)
        return tuple(masks), settled

    roles = _shared(featurizer, cells, groups, compute)
    out, usable = _rows({}, len(cells.rows), len(featurizer.feature_labels()))
    by_roles: dict[tuple[int, bytes], list[int]] = {}
    for member, masks in roles.items():
        by_roles.setdefault((len(masks[0]), np.concatenate(masks).tobytes()), []).append(member)
    for members in by_roles.values():
        large, small, anion = roles[members[0]]
        site_z = np.stack([cells.site_z[m] for m in members])
        out[members] = role_statistics(large, small, anion, tables[:, site_z].transpose(1, 0, 2))
        usable[members] = True
    return out, usable
