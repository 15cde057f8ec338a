"""Site-resolved element features: which element sits on which kind of site.

Composition features cannot tell ABX3 from BAX3: both have the same elements in the same
amounts. What differs is where each element sits — in a perovskite the A cation is
12-fold and the B cation 6-fold coordinated. This featurizer ties elemental properties to
the coordination number of the site each element occupies.
"""

from __future__ import annotations

import numpy as np
from matminer.featurizers.base import BaseFeaturizer
from matminer.utils.data import MagpieData
from pymatgen.analysis.local_env import CrystalNN, EconNN
from pymatgen.core import Structure

#: Ward et al.'s Magpie paper, the source of the elemental properties.
MAGPIE_CITATION = (
    "@article{ward2016magpie, title={A general-purpose machine learning framework for "
    "predicting properties of inorganic materials}, author={Ward, L. and Agrawal, A. and "
    "Choudhary, A. and Wolverton, C.}, journal={npj Computational Materials}, volume={2}, "
    "pages={16028}, year={2016}}"
)

DEFAULT_PROPERTIES = (
    "Number",
    "MendeleevNumber",
    "AtomicWeight",
    "Electronegativity",
    "CovalentRadius",
    "NValence",
    "Row",
    "Column",
)


class CoordinationElementProperty(BaseFeaturizer):
    """Elemental properties resolved by the coordination number (CN) of their site.

    For every Magpie property p it gives: the CN-weighted mean of p over sites, p on the
    most, on the least and on the intermediately coordinated sites (averaged where several
    share that kind of site; NaN when a structure has no intermediate sites), and the
    covariance of CN and p over the sites; plus the mean, largest and smallest CN. In an
    ABX3 perovskite the three kinds are the A (12-fold), X (2-fold) and B (6-fold) sites.
    Coordination numbers are Hoppe's effective coordination numbers (pymatgen's EconNN,
    neighbours within 6 Å), rounded to whole numbers so that sites of one kind share one,
    or with ``coordination="crystalnn"`` pymatgen's CrystalNN. The effective coordination
    number weighs each neighbour by its distance relative to the site's mean bond length,
    so a distorted (relaxed) cell and the ideal cell of the same arrangement get the same
    kinds of site; it is also about ten times faster than CrystalNN on small cells.
    Disordered sites take the occupancy-weighted property of their species.

    Parameters
    ----------
    properties
        Magpie property names.
    coordination
        ``econ`` (the default) or ``crystalnn``.
    """

    #: Changes whenever the features this class computes change, so that the feature
    #: store never serves rows computed by an older revision (see ``featurization_config``).
    REVISION = 3

    #: Neighbours farther than this (Å) carry no weight in an effective coordination number.
    ECON_CUTOFF = 6.0

    def __init__(
        self,
        properties: tuple[str, ...] | list[str] = DEFAULT_PROPERTIES,
        coordination: str = "econ",
    ) -> None:
        if coordination not in ("econ", "crystalnn"):
            raise ValueError(f"coordination must be 'econ' or 'crystalnn', got {coordination!r}")
        self.properties = list(properties)
        self.coordination = coordination
        self._magpie = MagpieData()
        self._neighbours = (
            EconNN(cutoff=self.ECON_CUTOFF) if coordination == "econ" else CrystalNN()
        )

    def _site_property(self, site, prop: str) -> float:
        return float(
            sum(
                occupancy * self._magpie.get_elemental_property(specie, prop)
                for specie, occupancy in site.species.items()
            )
        )

    def coordination_numbers(self, structure: Structure) -> np.ndarray:
        """The coordination number of every site (rounded effective ones with ``econ``).

        Raises
        ------
        ValueError
            If no site has a neighbour.
        """
        weighted = self.coordination == "econ"
        numbers = []
        for i, site in enumerate(structure):
            try:
                # (pymatgen types use_weights as a literal True or False)
                numbers.append(
                    self._neighbours.get_cn(structure, i, use_weights=True)
                    if weighted
                    else self._neighbours.get_cn(structure, i, use_weights=False)
                )
            except ValueError:  # EconNN takes the min() of no bond lengths
                if weighted and not structure.get_neighbors(site, self.ECON_CUTOFF):
                    raise ValueError(
                        f"site {i} ({site.species_string}) has no neighbour within "
                        f"{self.ECON_CUTOFF:g} Å"
                    ) from None
                raise
        cn = np.array(numbers, dtype=float)
        if weighted:
            cn = np.rint(cn)
        if cn.sum() == 0:
            raise ValueError(f"{type(self._neighbours).__name__} found no neighbours for any site")
        return cn

    def featurize(self, structure: Structure) -> list[float]:
        """Return the CN statistics followed by five values per property.

        Raises
        ------
        ValueError
            If no site has a neighbour.
        """
        cn = self.coordination_numbers(structure)
        properties = [
            np.array([[self._site_property(site, prop) for site in structure]], dtype=float)
            for prop in self.properties
        ]
        return [float(v) for v in site_statistics(cn, properties)[0]]

    def settled_coordination(self, structure: Structure) -> tuple[np.ndarray, bool]:
        """The coordination numbers of an ordered cell, and whether they hold for every
        copy of the cell scaled so that the same neighbours lie within the cutoff.

        Hoppe's weights depend on distance ratios only; with the same neighbours inside
        the cutoff, a scaled copy differs only through the absolute convergence threshold
        of the mean bond length (1e-4 Å), which moves a weight by far less than 1e-3. So
        the numbers are settled unless a weight lies within 0.02 of the bond tolerance
        (it might fall on the other side) or a number within 0.25 of a half (it might
        round the other way).

        Raises
        ------
        ValueError
            If no site has a neighbour, or the coordination is not ``econ``.
        """
        if self.coordination != "econ":
            raise ValueError("only effective coordination numbers scale")
        every = EconNN(tol=0.0, cutoff=self.ECON_CUTOFF)
        assert isinstance(self._neighbours, EconNN)  # as the coordination is "econ"
        tol = self._neighbours.tol
        raw, settled = [], True
        for i in range(len(structure)):
            weights = [n["weight"] for n in every.get_nn_info(structure, i)]
            settled = settled and all(abs(w - tol) >= 0.02 for w in weights)
            raw.append(sum(w for w in weights if w > tol))  # get_cn's terms, in its order
        cn = np.array(raw, dtype=float)
        if cn.sum() == 0:
            raise ValueError(f"{type(self._neighbours).__name__} found no neighbours for any site")
        settled = settled and not np.any(np.abs(cn - np.rint(cn)) > 0.25)
        return np.rint(cn), settled

    def feature_labels(self) -> list[str]:
        labels = ["CN mean", "CN maximum", "CN minimum"]
        for prop in self.properties:
            labels += [
                f"CN-weighted mean {prop}",
                f"{prop} at highest-CN sites",
                f"{prop} at lowest-CN sites",
                f"{prop} at intermediate-CN sites",
                f"covariance of CN and {prop}",
            ]
        return labels

    def citations(self) -> list[str]:
        return [
            "@article{hoppe1979econ, title={Effective coordination numbers (ECoN) and mean "
            "fictive ionic radii (MEFIR)}, author={Hoppe, R.}, journal={Zeitschrift fuer "
            "Kristallographie}, volume={150}, pages={23--52}, year={1979}}",
            "@article{pan2021crystalnn, title={Benchmarking Coordination Number Prediction "
            "Algorithms on Inorganic Crystal Structures}, author={Pan, H. and Ganose, A. M. and "
            "Horton, M. and others}, journal={Inorganic Chemistry}, volume={60}, "
            "pages={1590--1603}, year={2021}}",
            MAGPIE_CITATION,
        ]

    def implementors(self) -> list[str]:
        return ["matscreen"]


def site_statistics(cn: np.ndarray, properties: list[np.ndarray]) -> np.ndarray:
    """The features of :class:`CoordinationElementProperty` for cells that share their
    coordination numbers.

    Parameters
    ----------
    cn
        Coordination number of every site, shape (sites,).
    properties
        For every property, its value on every site of every cell, shape (cells, sites).

    Returns
    -------
    numpy.ndarray
        Shape (cells, 3 + 5 * len(properties)), in the order of ``feature_labels``.
    """
    n_cells = properties[0].shape[0] if properties else 1
    top, bottom = cn == cn.max(), cn == cn.min()
    middle = ~(top | bottom)
    columns = [np.full(n_cells, v) for v in (cn.mean(), cn.max(), cn.min())]
    for p in properties:
        columns += [
            np.sum(cn * p, axis=1) / np.sum(cn),
            p[:, top].mean(axis=1),
            p[:, bottom].mean(axis=1),
            p[:, middle].mean(axis=1) if middle.any() else np.full(n_cells, np.nan),
            np.mean((cn - cn.mean()) * (p - p.mean(axis=1, keepdims=True)), axis=1),
        ]
    return np.column_stack(columns)
