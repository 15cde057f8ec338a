"""Featurizer presets: named lists of matminer featurizers, described as plain data.

A preset's description (classes, parameters, package versions) is what the feature store
and the catalog hash, so two runs share features exactly when they would compute the same
numbers.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from typing import Any, Literal

from matminer.featurizers.base import BaseFeaturizer

from matscreen.tasks.errors import FeaturizationError
from matscreen.tasks.hashing import content_hash


@dataclass(frozen=True)
class FeaturizerConfig:
    """One matminer featurizer: what it reads, its class, and how it is built."""

    input: Literal["composition", "structure"]
    cls: str
    from_preset: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


PRESETS: dict[str, tuple[FeaturizerConfig, ...]] = {
    # Composition descriptors (Magpie statistics, stoichiometry, valence orbitals, ionic
    # character) plus cheap structure descriptors (density, symmetry): about 150 columns,
    # hundreds of structures per second per core.
    "fast": (
        FeaturizerConfig(
            "composition", "matminer.featurizers.composition.ElementProperty", "magpie"
        ),
        FeaturizerConfig("composition", "matminer.featurizers.composition.Stoichiometry"),
        FeaturizerConfig("composition", "matminer.featurizers.composition.ValenceOrbital"),
        FeaturizerConfig(
            "composition", "matminer.featurizers.composition.IonProperty", kwargs={"fast": True}
        ),
        FeaturizerConfig("structure", "matminer.featurizers.structure.DensityFeatures"),
        FeaturizerConfig(
            "structure",
            "matminer.featurizers.structure.GlobalSymmetryFeatures",
            kwargs={
                "desired_features": [
                    "spacegroup_num",
                    "crystal_system_int",
                    "is_centrosymmetric",
                    "n_symmetry_ops",
                ]
            },
        ),
    ),
}

_VERSIONED_PACKAGES = ("matminer", "pymatgen", "numpy")


def _configs(name: str) -> tuple[FeaturizerConfig, ...]:
    try:
        return PRESETS[name]
    except KeyError:
        raise FeaturizationError(
            f"unknown featurizer preset {name!r} (known: {sorted(PRESETS)})"
        ) from None


def preset_config(name: str) -> dict[str, Any]:
    """Describe a preset as plain data: featurizers, parameters and package versions.

    Raises
    ------
    FeaturizationError
        If ``name`` is not a known preset.
    """
    return {
        "preset": name,
        "featurizers": [asdict(config) for config in _configs(name)],
        "versions": {package: version(package) for package in _VERSIONED_PACKAGES},
    }


def preset_hash(name: str) -> str:
    """Return the sha256 of a preset's description (the feature cache key's second half)."""
    return content_hash(preset_config(name))


@functools.lru_cache(maxsize=8)
def build_featurizers(name: str) -> tuple[tuple[str, BaseFeaturizer], ...]:
    """Instantiate a preset's featurizers, once per process.

    Returns
    -------
    tuple of (input, featurizer)
        Each featurizer with the kind of object it reads ("composition" or "structure").

    Raises
    ------
    FeaturizationError
        If the preset is unknown, a class cannot be imported, or two featurizers share a
        feature label.
    """
    built = []
    for config in _configs(name):
        module_name, _, class_name = config.cls.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise FeaturizationError(f"preset {name}: cannot import {config.cls}: {exc}") from exc
        featurizer = (
            cls.from_preset(config.from_preset, **config.kwargs)
            if config.from_preset
            else cls(**config.kwargs)
        )
        built.append((config.input, featurizer))
    labels = [label for _, f in built for label in f.feature_labels()]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise FeaturizationError(f"preset {name}: feature labels repeat: {duplicated}")
    return tuple(built)


def feature_labels(name: str) -> list[str]:
    """Return the column labels a preset produces, in order."""
    return [label for _, f in build_featurizers(name) for label in f.feature_labels()]


def citations(name: str) -> list[str]:
    """Return the BibTeX citations of a preset's featurizers, without repeats."""
    seen: list[str] = []
    for _, featurizer in build_featurizers(name):
        for citation in featurizer.citations():
            if citation not in seen:
                seen.append(citation)
    return seen


def describe(name: str, n_features: int) -> dict[str, Any]:
    """Short description of a preset for reports: classes, feature count, config hash."""
    return {
        "preset": name,
        "n_features": n_features,
        "featurizers": [config.cls.rsplit(".", 1)[1] for config in _configs(name)],
        "config_sha256": preset_hash(name),
    }
