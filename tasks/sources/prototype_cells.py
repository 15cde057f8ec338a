"""The prototypes a decoration starts from: built-in cells, and cells read from files."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Lattice, Structure

from matscreen.tasks.errors import SourceError

#: A site's coordination is the number of neighbours within this factor of its nearest
#: neighbour distance (file prototypes); 1.2 separates the first shell from the second in
#: the common ionic structure types (perovskite A: 12 X at a/√2, then 8 B at 0.87a).
_SHELL_FACTOR = 1.2


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
