"""Featurizer presets and the plain-data description of a featurization.

A featurization is described by its featurizers (class, how built, what they read) and the
versions of the packages that compute them. That description's hash keys the feature
store: two runs share cached features exactly when they would compute the same numbers.
"""

from __future__ import annotations

import functools
import importlib
import json
import math
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from matscreen.tasks.errors import FeaturizationError
from matscreen.tasks.hashing import canonical_json, content_hash

# The section's own module: the spec package imports this one while it loads.
from matscreen.tasks.spec.featurization import AUTO_PRESET, FeaturizationSpec, FeaturizerSpec

if TYPE_CHECKING:  # matminer is imported where featurizers are built, not before
    from matminer.featurizers.base import BaseFeaturizer

_M = "matminer.featurizers."


def _featurizer(
    input: str, cls: str, from_preset: str | None = None, kwargs: dict[str, Any] | None = None
) -> FeaturizerSpec:
    # Presets are trusted: they are built without the spec's import check, so that loading
    # this module does not import matminer (worker processes only need it in the child).
    return FeaturizerSpec.model_validate(
        {"input": input, "cls": cls, "from_preset": from_preset, "kwargs": kwargs or {}},
        context={"trusted": True},
    )


_SITE = "matscreen.tasks.featurize.site_resolved.CoordinationElementProperty"

_ROLES = "matscreen.tasks.featurize.site_roles.SiteRoleProperty"

#: The 22 properties of matminer's ``magpie`` preset, resolved by coordination.
_SITE_PROPERTIES = ["Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
                    "CovalentRadius", "Electronegativity", "NsValence", "NpValence",
                    "NdValence", "NfValence", "NValence", "NsUnfilled", "NpUnfilled",
                    "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap",
                    "GSmagmom", "SpaceGroupNumber"]  # fmt: skip

_COMPOSITION = (
    _featurizer(input="composition", cls=_M + "composition.ElementProperty", from_preset="magpie"),
    _featurizer(input="composition", cls=_M + "composition.Stoichiometry"),
    _featurizer(input="composition", cls=_M + "composition.ValenceOrbital"),
    _featurizer(input="composition", cls=_M + "composition.IonProperty", kwargs={"fast": True}),
)

_SITES = (*_COMPOSITION, _featurizer(input="structure", cls=_ROLES))

_FAST = (
    *_COMPOSITION,
    _featurizer(input="structure", cls=_M + "structure.DensityFeatures"),
    _featurizer(
        input="structure",
        cls=_M + "structure.GlobalSymmetryFeatures",
        kwargs={
            "desired_features": [
                "spacegroup_num",
                "crystal_system_int",
                "is_centrosymmetric",
                "n_symmetry_ops",
            ]
        },
    ),
)

PRESETS: dict[str, tuple[FeaturizerSpec, ...]] = {
    # Composition descriptors and element properties by site role (anion, large and small
    # cation), nothing else of the geometry: a relaxed cell and the ideal decorated cell of
    # one compound get the same features. For screening generated (unrelaxed) candidates.
    "sites": _SITES,
    # sites plus the geometry of relaxed cells: element properties by effective
    # coordination number, density and packing. The most accurate on relaxed structures,
    # biased on unrelaxed ones (their geometry is not the relaxed one the model learned).
    "relaxed": (
        *_SITES,
        _featurizer(input="structure", cls=_M + "structure.DensityFeatures"),
        _featurizer(input="structure", cls=_SITE, kwargs={"properties": _SITE_PROPERTIES}),
    ),
    # Composition descriptors (Magpie statistics, stoichiometry, valence orbitals, ionic
    # character) and cheap structure descriptors (density, symmetry): about 150 columns,
    # a few hundred structures per second per core.
    "fast": _FAST,
    # fast plus local-environment descriptors: CrystalNN site fingerprints, structural
    # heterogeneity, chemical ordering, packing efficiency, and which element sits on
    # which kind of site. A few structures per second per core.
    "structure": _FAST
    + (
        _featurizer(
            input="structure",
            cls=_M + "structure.SiteStatsFingerprint",
            from_preset="CrystalNNFingerprint_ops",
        ),
        _featurizer(input="structure", cls=_M + "structure.StructuralHeterogeneity"),
        _featurizer(input="structure", cls=_M + "structure.ChemicalOrdering"),
        _featurizer(input="structure", cls=_M + "structure.MaximumPackingEfficiency"),
        _featurizer(input="structure", cls=_SITE),
    ),
}

#: Rough cost of each featurizer, seconds per site, measured on one core on 5-atom cells;
#: used only to size batches. Classes not listed are taken as 10 ms per site.
COST_PER_SITE_S: dict[str, float] = {
    "ElementProperty": 3e-4,
    "Stoichiometry": 1e-5,
    "ValenceOrbital": 2e-5,
    "IonProperty": 4e-5,
    "DensityFeatures": 1e-4,
    "GlobalSymmetryFeatures": 4e-4,
    "CoordinationElementProperty": 7e-3,
    "SiteRoleProperty": 5e-4,
    "SiteStatsFingerprint": 1.6e-2,
    "StructuralHeterogeneity": 1.8e-2,
    "ChemicalOrdering": 3e-2,
    "MaximumPackingEfficiency": 4e-2,
}

_VERSIONED_PACKAGES = ("matminer", "pymatgen", "numpy")


def featurization_config(spec: FeaturizationSpec) -> dict[str, Any]:
    """Describe a featurization as plain data: featurizers in order and package versions.

    matscreen's own featurizers also carry their class's ``REVISION``, so that changing
    what one computes changes the description, and with it the feature store's key.
    """
    if spec.preset == AUTO_PRESET:
        raise FeaturizationError("the 'auto' preset must be resolved before featurizing")
    featurizers = list(PRESETS[spec.preset]) if spec.preset else []
    featurizers += spec.featurizers
    described = []
    for featurizer in featurizers:
        item = featurizer.model_dump()
        if featurizer.cls.startswith("matscreen."):
            item["revision"] = _revision(featurizer.cls)
        described.append(item)
    return {
        "preset": spec.preset,
        "featurizers": described,
        "versions": {package: version(package) for package in _VERSIONED_PACKAGES},
    }


def _revision(cls_path: str) -> int | None:
    """The ``REVISION`` of a matscreen featurizer class (None if it has none or is unknown)."""
    module_name, _, class_name = cls_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return None  # reported with a clear message when the featurizers are built
    return getattr(cls, "REVISION", None)


def preset_config(name: str) -> dict[str, Any]:
    """The featurization description of a preset on its own.

    Raises
    ------
    FeaturizationError
        If ``name`` is not a known preset.
    """
    if name not in PRESETS:
        raise FeaturizationError(f"unknown featurizer preset {name!r} (known: {sorted(PRESETS)})")
    return featurization_config(FeaturizationSpec(preset=name))


def config_hash(config: dict[str, Any]) -> str:
    """The sha256 of a featurization description (the feature store's key)."""
    return content_hash(config)


def preset_hash(name: str) -> str:
    """The sha256 of a preset's description."""
    return config_hash(preset_config(name))


@functools.lru_cache(maxsize=8)
def _build(config_json: str) -> tuple[tuple[str, BaseFeaturizer], ...]:
    config = json.loads(config_json)
    built = []
    for item in config["featurizers"]:
        module_name, _, class_name = item["cls"].rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise FeaturizationError(f"cannot import featurizer {item['cls']}: {exc}") from exc
        featurizer = (
            cls.from_preset(item["from_preset"], **item["kwargs"])
            if item["from_preset"]
            else cls(**item["kwargs"])
        )
        built.append((item["input"], featurizer))
    labels = [label for _, f in built for label in f.feature_labels()]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise FeaturizationError(f"feature labels repeat across featurizers: {duplicated}")
    return tuple(built)


def build_featurizers(config: dict[str, Any]) -> tuple[tuple[str, BaseFeaturizer], ...]:
    """Instantiate a featurization's featurizers, once per process and description.

    Returns
    -------
    tuple of (input, featurizer)
        Each featurizer with what it reads ("composition" or "structure").

    Raises
    ------
    FeaturizationError
        If a class cannot be imported or two featurizers share a feature label.
    """
    return _build(canonical_json(config))


def feature_labels(config: dict[str, Any]) -> list[str]:
    """The column labels a featurization produces, in order."""
    return [label for _, f in build_featurizers(config) for label in f.feature_labels()]


def citations(config: dict[str, Any]) -> list[str]:
    """The BibTeX citations of a featurization's featurizers, without repeats."""
    seen: list[str] = []
    for _, featurizer in build_featurizers(config):
        for citation in featurizer.citations():
            if citation not in seen:
                seen.append(citation)
    return seen


def cost_per_site(config: dict[str, Any]) -> float:
    """Estimated seconds one site costs with this featurization (for batch sizing)."""
    return sum(
        COST_PER_SITE_S.get(item["cls"].rsplit(".", 1)[1], 1e-2) for item in config["featurizers"]
    )


#: Seconds a structure costs on the array path (``arrays.featurize_cells``), measured on
#: 5-atom decorations on one core, once the families of the batch are known.
ARRAY_COST_S = 1e-4

#: Largest batch: row by row, a batch reaches the store within minutes; on the array path
#: a batch of structure dicts stays within about 100 MB.
MAX_BATCH = {"rows": 2000, "arrays": 20000}


def batch_size_for(
    config: dict[str, Any],
    mean_sites: float,
    n_structures: int,
    workers: int,
    target_s: float = 15.0,
) -> int:
    """Structures per batch: about ``target_s`` seconds each, and at least two batches per
    worker, so that every worker has work and results reach the store as they come.

    A Prefect task on Dask costs the driver about a second of CPU (argument tokenizing,
    context serialization), so batches much shorter than ``target_s`` waste the cores."""
    from matscreen.tasks.featurize.arrays import supports

    path = "arrays" if supports(config) else "rows"
    per_structure = (
        ARRAY_COST_S if path == "arrays" else cost_per_site(config) * max(mean_sites, 1.0)
    )
    by_cost = math.floor(target_s / per_structure)
    by_balance = math.ceil(n_structures / (2 * max(workers, 1)))
    return max(1, min(MAX_BATCH[path], by_cost, by_balance))


def describe(config: dict[str, Any], n_features: int) -> dict[str, Any]:
    """Short description of a featurization for reports: classes, feature count, hash."""
    return {
        "preset": config["preset"] or "custom",
        "n_features": n_features,
        "featurizers": [item["cls"].rsplit(".", 1)[1] for item in config["featurizers"]],
        "config_sha256": config_hash(config),
    }
