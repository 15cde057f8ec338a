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

    def _site_property(self, site, prop: str) -> float:  # type: ignore[no-untyped-def]
        return float(
            sum(
                occupancy * self._magpie.get_elemental_property(specie, prop)
                for specie, occupancy in site.species.items()
            )
        )

    def featurize(self, structure: Structure) -> list[float]:
        """Return the CN statistics followed by five values per property.

        Raises
        ------
        ValueError
            If no site has a neighbour.
        """
        weighted = self.coordination == "econ"
        cn = np.array(
            [
                self._neighbours.get_cn(structure, i, use_weights=weighted)
                for i in range(len(structure))
            ],
            dtype=float,
        )
        if weighted:
            cn = np.rint(cn)
        if cn.sum() == 0:
            raise ValueError(f"{type(self._neighbours).__name__} found no neighbours for any site")
        values = [float(cn.mean()), float(cn.max()), float(cn.min())]
        top, bottom = cn == cn.max(), cn == cn.min()
        middle = ~(top | bottom)
        for prop in self.properties:
            p = np.array([self._site_property(site, prop) for site in structure], dtype=float)
            values += [
                float(np.sum(cn * p) / np.sum(cn)),
                float(p[top].mean()),
                float(p[bottom].mean()),
                float(p[middle].mean()) if middle.any() else float("nan"),
                float(np.mean((cn - cn.mean()) * (p - p.mean()))),
            ]
        return values

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
            "@article{ward2016magpie, title={A general-purpose machine learning framework for "
            "predicting properties of inorganic materials}, author={Ward, L. and Agrawal, A. and "
            "Choudhary, A. and Wolverton, C.}, journal={npj Computational Materials}, volume={2}, "
            "pages={16028}, year={2016}}",
        ]

    def implementors(self) -> list[str]:
        return ["matscreen"]
