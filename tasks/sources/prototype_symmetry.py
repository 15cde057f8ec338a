"""Decorations of one prototype that are the same crystal.

In a prototype with two labels on symmetry-equivalent sites — the B and B' sites of a
rock-salt ordered double perovskite A2BB'X6, which a translation by half the cubic cell
exchanges — the decoration (B = Ti, B' = Nb) and its swap (B = Nb, B' = Ti) are one
crystal. Enumerating both would screen every such compound twice, or leave the ingest
step to find out with a structure matcher at tens of milliseconds a pair.

The symmetry operations of the undecorated framework (every site the same species) that
map each label's sites onto one label's sites permute the labels. A decoration is made
only if no such operation turns it into a decoration that comes earlier in the
enumeration (a smaller tuple of entry positions), so each crystal is made once, as the
first of its images. Operations that would move a site onto one of another coordination
or charge sign are not used: the image would take other radii or oxidation states, so it
is not the same candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Tolerance (in the prototype's lattice units) of the framework's symmetry search and of
#: matching a site's image to a site.
SYMPREC = 1e-3


def label_exchanging_permutations(prototype: Any) -> tuple[tuple[int, ...], ...]:
    """Site permutations of the framework's symmetry operations that exchange labels.

    Each permutation ``p`` sends the content of site ``i`` to site ``p[i]``; only those
    whose label map is not the identity, and keeps every site's coordination and its
    label's charge sign, are returned (each once, sorted).
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    frac = np.asarray(prototype.frac_coords, dtype=float)
    labels = prototype.site_labels
    if len(set(labels)) < 2:
        return ()
    framework = Structure(Lattice(prototype.lattice), ["H"] * len(frac), frac)
    operations = SpacegroupAnalyzer(framework, symprec=SYMPREC).get_symmetry_operations()
    found: set[tuple[int, ...]] = set()
    for operation in operations:
        image = operation.operate_multi(frac)
        delta = image[:, None, :] - frac[None, :, :]
        close = np.all(np.abs(delta - np.round(delta)) < SYMPREC, axis=2)
        if not np.all(close.sum(axis=1) == 1):
            continue
        permutation = tuple(int(j) for j in close.argmax(axis=1))
        if _exchanges_labels(prototype, permutation):
            found.add(permutation)
    return tuple(sorted(found))


def _exchanges_labels(prototype: Any, permutation: Sequence[int]) -> bool:
    labels = prototype.site_labels
    label_map: dict[str, str] = {}
    for i, j in enumerate(permutation):
        if label_map.setdefault(labels[i], labels[j]) != labels[j]:
            return False
        if prototype.coordination[i] != prototype.coordination[j]:
            return False
        if prototype.charge_signs[labels[i]] != prototype.charge_signs[labels[j]]:
            return False
    return any(source != target for source, target in label_map.items())


class FirstImage:
    """Tells whether a decoration is the first of its symmetry images in the enumeration.

    Parameters
    ----------
    prototype
        The prototype.
    lists
        Its site entries, one list per label in the prototype's label order (the lists
        :func:`~matscreen.tasks.sources.prototypes.site_entries` returns).
    """

    def __init__(self, prototype: Any, lists: Sequence[Sequence[Any]]) -> None:
        self.permutations = label_exchanging_permutations(prototype)
        self._sites = [
            [i for i, label in enumerate(prototype.site_labels) if label == name]
            for name in prototype.labels
        ]
        self._positions = [
            {entry.elements: k for k, entry in enumerate(entries)} for entries in lists
        ]
        # Which sites hold the same element (a pattern) -> one permutation per distinct
        # image of that pattern, leaving out images equal to the pattern itself.
        self._images: dict[tuple[int, ...], tuple[tuple[int, ...], ...]] = {}

    def _distinct_images(self, species: Sequence[str]) -> tuple[tuple[int, ...], ...]:
        codes: dict[str, int] = {}
        pattern = tuple(codes.setdefault(symbol, len(codes)) for symbol in species)
        found = self._images.get(pattern)
        if found is None:
            by_image: dict[tuple[int, ...], tuple[int, ...]] = {}
            for permutation in self.permutations:
                image = [0] * len(pattern)
                for i, code in enumerate(pattern):
                    image[permutation[i]] = code
                if tuple(image) != pattern:
                    by_image.setdefault(tuple(image), permutation)
            found = self._images[pattern] = tuple(by_image.values())
        return found

    def is_first(self, positions: Sequence[int], species: Sequence[str]) -> bool:
        """Whether the decoration at ``positions`` (entry index per label), whose site
        species are ``species``, is the first of its images that the enumeration makes."""
        own = tuple(positions)
        for permutation in self._distinct_images(species):
            image: list[str] = [""] * len(species)
            for i, symbol in enumerate(species):
                image[permutation[i]] = symbol
            key = []
            for sites, table in zip(self._sites, self._positions, strict=True):
                k = table.get(tuple(image[i] for i in sites))
                if k is None:
                    break
                key.append(k)
            else:
                if tuple(key) < own:
                    return False
        return True


def exchanged_label_groups(
    prototype: Any, permutations: Sequence[Sequence[int]]
) -> list[list[str]]:
    """The labels the permutations exchange, grouped (``[["Nb", "Ti"]]``), sorted."""
    labels = prototype.site_labels
    parent = {label: label for label in labels}

    def root(label: str) -> str:
        while parent[label] != label:
            label = parent[label]
        return label

    for permutation in permutations:
        for i, j in enumerate(permutation):
            a, b = root(labels[i]), root(labels[j])
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, set[str]] = {}
    for label in labels:
        groups.setdefault(root(label), set()).add(label)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
