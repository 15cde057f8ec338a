"""Element properties by the role of each site: anion, large cation, small cation.

Composition features cannot tell ABX3 from BAX3. What differs is where each element sits:
in a perovskite the A cation sits in a large cage of twelve anions, the B cation in an
octahedron of six. This featurizer ties elemental properties to three roles — the anions,
the cations farthest from their anions (A-like) and the cations closest to theirs
(B-like) — and to nothing else of the geometry.

That is deliberate. A screened candidate is generated, not relaxed: its lattice comes from
ionic radii and its sites from the ideal prototype, while every training structure is a
DFT-relaxed cell. Features that read distances, volumes, symmetry or coordination numbers
see the relaxation in the training cells (the relaxed geometry is itself a result of the
calculation) and not in the candidates, so a model trained on them predicts candidates
with a bias. Roles only need the *order* of cation–anion contacts, which a relaxation
rarely changes; the same compound, relaxed or decorated, gets the same features.
"""

from __future__ import annotations

import functools

import numpy as np
from matminer.featurizers.base import BaseFeaturizer
from matminer.utils.data import MagpieData
from pymatgen.core import Element, Structure

from matscreen.tasks.featurize.site_resolved import MAGPIE_CITATION

#: Elements that are anions wherever they occur with a less electronegative element.
ANION_ELEMENTS = frozenset({"N", "O", "F", "S", "Cl", "Se", "Br", "I"})

#: Magpie properties resolved by role by default: the 22 of matminer's ``magpie`` preset
#: and the ionization energies, electron affinity, polarizability, ground-state energy
#: and Miedema parameters, which bear on how strongly an element binds.
DEFAULT_PROPERTIES = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "MeltingT",
    "Column",
    "Row",
    "CovalentRadius",
    "Electronegativity",
    "NsValence",
    "NpValence",
    "NdValence",
    "NfValence",
    "NValence",
    "NsUnfilled",
    "NpUnfilled",
    "NdUnfilled",
    "NfUnfilled",
    "NUnfilled",
    "GSvolume_pa",
    "GSbandgap",
    "GSmagmom",
    "SpaceGroupNumber",
    "FirstIonizationEnergy",
    "SecondIonizationEnergy",
    "ElectronAffinity",
    "Polarizability",
    "GSenergy_pa",
    "phi",
    "n_ws^third",
)

#: Contact distances are compared in units of ``volume ** (1/3)`` to this many decimals,
#: so that the roles do not depend on the cell's scale and sites of one kind tie.
CONTACT_DECIMALS = 4

_ROLES = ("large cation", "small cation", "anion")


@functools.cache
def _electronegativity(symbol: str) -> float:
    value = Element(symbol).X
    return float(value) if value == value else 0.0  # NaN (noble gases) ranks lowest


def anion_symbols(symbols: frozenset[str]) -> frozenset[str]:
    """The elements of a structure that sit on anion sites.

    Those of :data:`ANION_ELEMENTS` when some but not every element is one; otherwise the
    most electronegative element (all of them in an elemental solid).
    """
    found = symbols & ANION_ELEMENTS
    if found and found != symbols:
        return found
    top = max(_electronegativity(s) for s in symbols)
    return frozenset(s for s in symbols if _electronegativity(s) == top)


def site_roles(
    site_elements: list[frozenset[str]], frac_coords: np.ndarray, lattice: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Which sites are large cations, small cations and anions.

    A site is an anion site when every element on it is an anion (:func:`anion_symbols`
    of all the structure's elements). Each cation site's contacts are its minimum-image
    distances to every anion site, sorted, in units of ``volume ** (1/3)`` and rounded to
    :data:`CONTACT_DECIMALS`; the large cations are the sites with the greatest contacts
    (compared element by element: the nearest anion first), the small cations those with
    the least. A structure whose sites are all anions (an elemental solid) counts every
    site in every role.

    Parameters
    ----------
    site_elements
        The element symbols on each site (one for an ordered site).

    Returns
    -------
    large, small, anion, settled
        Boolean masks over the sites, and whether no contact lies so close to a rounding
        boundary that a copy of the cell at another scale might order the sites otherwise.
    """
    from pymatgen.core import Lattice

    anions = anion_symbols(frozenset().union(*site_elements))
    anion = np.array([elements <= anions for elements in site_elements])
    if anion.all():
        every = np.ones(len(site_elements), dtype=bool)
        return every, every, every, True
    cations = np.flatnonzero(~anion)
    lat = Lattice(lattice)
    distances = lat.get_all_distances(frac_coords[cations], frac_coords[anion])
    scaled = np.sort(distances, axis=1) / np.cbrt(lat.volume) * 10**CONTACT_DECIMALS
    settled = bool(np.all(np.abs(scaled - np.floor(scaled) - 0.5) > 1e-6))
    keys = [tuple(row) for row in np.round(scaled)]
    large = np.zeros(len(site_elements), dtype=bool)
    small = np.zeros(len(site_elements), dtype=bool)
    large[[c for c, key in zip(cations, keys, strict=True) if key == max(keys)]] = True
    small[[c for c, key in zip(cations, keys, strict=True) if key == min(keys)]] = True
    return large, small, anion, settled


class SiteRoleProperty(BaseFeaturizer):
    """Elemental properties on the large-cation, small-cation and anion sites.

    For every Magpie property p: p averaged over the large-cation sites, over the
    small-cation sites and over the anion sites, and the range (largest minus smallest)
    of p over the anion sites (non-zero for mixed anions such as O2N); and the fraction of
    sites that are anions. Which sites are anions is decided by element
    (:func:`anion_symbols`), which cations are large or small by the order of their
    contacts with the anions (:func:`site_roles`); no distance, volume or angle enters a
    feature, so a relaxed cell and the ideal decorated cell of the same compound get the
    same features. In an ABX3 perovskite the roles are A, B and X; in a binary the one
    cation is both large and small. A disordered site takes the occupancy-weighted
    property of its species, and is an anion site when all of them are anions.

    Parameters
    ----------
    properties
        Magpie property names.
    """

    #: Changes whenever the features this class computes change, so that the feature
    #: store never serves rows computed by an older revision (see ``featurization_config``).
    REVISION = 1

    def __init__(self, properties: tuple[str, ...] | list[str] = DEFAULT_PROPERTIES) -> None:
        self.properties = list(properties)
        self._magpie = MagpieData()
        unknown = [p for p in self.properties if p not in self._magpie.all_elemental_props]
        if unknown:
            raise ValueError(f"unknown Magpie properties {unknown}")

    def roles(self, structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """:func:`site_roles` of a structure.

        Raises
        ------
        ValueError
            If a site holds something that is not an element (a dummy species).
        """
        return site_roles(
            [frozenset(_elements(site).values()) for site in structure],
            structure.frac_coords,
            structure.lattice.matrix,
        )

    def featurize(self, structure: Structure) -> list[float]:
        """Return four values per property, then the anion fraction.

        Raises
        ------
        ValueError
            If a site holds something that is not an element (a dummy species).
        """
        large, small, anion, _ = self.roles(structure)
        values = np.array(
            [[self._site_value(site, prop) for site in structure] for prop in self.properties]
        )
        return [float(v) for v in role_statistics(large, small, anion, values[None])[0]]

    def _site_value(self, site, prop: str) -> float:
        """``prop`` of the site's species, weighted by their occupancies."""
        elements = _elements(site)
        value = sum(
            occupancy * self._magpie.get_elemental_property(element, prop)
            for element, occupancy in zip(elements, site.species.values(), strict=True)
        )
        return float(value / sum(site.species.values()))

    def feature_labels(self) -> list[str]:
        labels = []
        for prop in self.properties:
            labels += [f"{prop} at {role} sites" for role in _ROLES]
            labels.append(f"{prop} range at anion sites")
        return [*labels, "anion site fraction"]

    def citations(self) -> list[str]:
        return [MAGPIE_CITATION]

    def implementors(self) -> list[str]:
        return ["matscreen"]


def _elements(site) -> dict[Element, str]:
    """Element -> symbol of every species on a site, in the site's order.

    Raises
    ------
    ValueError
        If a species is not an element (a dummy species).
    """
    found = {}
    for specie in site.species:
        element = getattr(specie, "element", specie)
        if not isinstance(element, Element):
            raise ValueError(f"site species {site.species_string!r} is not an element")
        found[element] = element.symbol
    return found


def role_statistics(
    large: np.ndarray, small: np.ndarray, anion: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """The features of :class:`SiteRoleProperty` for cells that share their roles.

    Parameters
    ----------
    large, small, anion
        Role masks over the sites, shape (sites,).
    values
        Every property on every site of every cell, shape (cells, properties, sites).

    Returns
    -------
    numpy.ndarray
        Shape (cells, 4 * properties + 1), in the order of ``feature_labels``.
    """
    with np.errstate(invalid="ignore"):
        on_anions = values[:, :, anion]
        columns = np.stack(
            [
                values[:, :, large].mean(axis=2),
                values[:, :, small].mean(axis=2),
                on_anions.mean(axis=2),
                on_anions.max(axis=2) - on_anions.min(axis=2),
            ],
            axis=2,
        ).reshape(values.shape[0], -1)
    fraction = np.full((values.shape[0], 1), anion.mean())
    return np.hstack([columns, fraction])
