"""The ``featurization`` section: presets, featurizer classes and their labels."""

from __future__ import annotations

import functools
import importlib
import json
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from matscreen.tasks.hashing import canonical_json
from matscreen.tasks.spec.base import Strict, located

#: Modules a spec may name featurizer classes from.
FEATURIZER_MODULES = ("matminer.featurizers.", "matscreen.tasks.featurize.")


class FeaturizerSpec(Strict):
    """One matminer-contract featurizer: what it reads, its class and how it is built."""

    input: Literal["composition", "structure"]
    cls: str
    from_preset: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cls")
    @classmethod
    def _importable(cls, value: str, info: ValidationInfo) -> str:
        if (info.context or {}).get("trusted"):  # matscreen's own presets
            return value
        if not value.startswith(FEATURIZER_MODULES):
            raise ValueError(f"{value!r} is not in {' or '.join(FEATURIZER_MODULES)}")
        module_name, _, class_name = value.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {value}: {exc}") from exc
        if not callable(getattr(found, "featurize", None)):
            raise ValueError(f"{value} has no featurize method")
        return value


#: The preset name that leaves the choice to matscreen (see ``choose_preset``).
AUTO_PRESET = "auto"


#: Source kinds whose records are relaxed entries of a database of computed structures.
COMPUTED_SOURCE_KINDS = ("mp", "aflow", "optimade")


def choose_preset(screened_kinds: Sequence[str]) -> tuple[str, str]:
    """The featurizer preset for a campaign whose screened sources are of these kinds,
    and why.

    Features that read the relaxed geometry (``relaxed``) are the most accurate on relaxed
    structures but biased on generated ones, whose geometry the model never saw
    relaxed; ``sites`` reads no geometry beyond which site is which. So: ``relaxed`` when
    every screened record is a computed database entry (or nothing is screened),
    ``sites`` when some may be unrelaxed (generated decorations, files, CSV files).
    """
    unrelaxed = sorted({kind for kind in screened_kinds if kind not in COMPUTED_SOURCE_KINDS})
    if unrelaxed:
        return "sites", (
            f"screened records from {', '.join(unrelaxed)} sources may be unrelaxed: "
            "features read no geometry beyond site roles, so predictions carry no "
            "relaxed-versus-generated bias"
        )
    if screened_kinds:
        return "relaxed", (
            "every screened record is a relaxed database entry: features include the "
            "relaxed geometry (coordination, density)"
        )
    return "relaxed", "nothing is screened: features include the relaxed geometry"


class FeaturizationSpec(Strict):
    """Which featurizers run, how structures are batched, and how long one may take.

    The preset's featurizers come first, then ``featurizers`` (so a spec can extend a
    preset, or give ``preset: null`` and a list of its own).
    """

    preset: str | None = AUTO_PRESET
    featurizers: list[FeaturizerSpec] = Field(default_factory=list)
    batch_size: int | None = Field(default=None, ge=1)
    time_limit_s: float = Field(default=120.0, gt=0)
    #: Why matscreen chose the preset, when the spec left the choice to it (``auto``).
    chosen_because: str = ""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        from matscreen.tasks.featurize.presets import PRESETS

        if value is not None and value != AUTO_PRESET and value not in PRESETS:
            known = sorted([*PRESETS, AUTO_PRESET])
            raise ValueError(f"unknown preset {value!r} (known: {known})")
        return value

    def resolved(self, preset: str, because: str) -> FeaturizationSpec:
        """This featurization with ``auto`` replaced by ``preset`` (itself otherwise)."""
        if self.preset != AUTO_PRESET:
            return self
        # Validated again: the listed featurizers' labels may clash with the chosen preset.
        return FeaturizationSpec.model_validate(
            {**self.model_dump(), "preset": preset, "chosen_because": because}
        )

    @model_validator(mode="after")
    def _something_to_run(self) -> FeaturizationSpec:
        if self.preset is None and not self.featurizers:
            raise ValueError("give a 'preset', 'featurizers' or both")
        return self

    @model_validator(mode="after")
    def _distinct_labels(self) -> FeaturizationSpec:
        problems = [(("featurizers", i), message, None) for i, message in _label_clashes(self)]
        if problems:
            raise located("FeaturizationSpec", problems)
        return self


@functools.lru_cache(maxsize=64)
def _labels_of(featurizer_json: str) -> tuple[str, ...] | str | None:
    """The feature labels of a featurizer as FeaturizerSpec JSON describes it; a message if
    it cannot be built; None if it gives its labels only once fitted."""
    item = json.loads(featurizer_json)
    module_name, _, class_name = item["cls"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
        built = (
            cls.from_preset(item["from_preset"], **item["kwargs"])
            if item["from_preset"]
            else cls(**item["kwargs"])
        )
    except Exception as exc:  # whatever a third-party constructor raises on bad arguments
        return f"cannot build {item['cls']} from {item['from_preset'] or item['kwargs']}: {exc}"
    try:
        return tuple(built.feature_labels())
    except Exception:  # labels known only after fitting: featurization checks them then
        return None


def _label_clashes(spec: FeaturizationSpec) -> list[tuple[int, str]]:
    """Each listed featurizer that cannot be built, or whose feature labels repeat those of
    the preset or of an earlier featurizer (the columns would collide), with why."""
    from matscreen.tasks.featurize.presets import PRESETS

    if not spec.featurizers or spec.preset == AUTO_PRESET:
        # A preset's own featurizers are checked where the preset is defined; ``auto`` is
        # checked once the preset is chosen.
        return []
    # label -> (where it comes from, the class giving it)
    owners: dict[str, tuple[str, str]] = {}
    for featurizer in PRESETS[spec.preset] if spec.preset else ():
        labels = _labels_of(canonical_json(featurizer.model_dump()))
        for label in labels if isinstance(labels, tuple) else ():
            owners.setdefault(label, (f"the preset {spec.preset!r}", featurizer.cls))
    clashes: list[tuple[int, str]] = []
    for i, featurizer in enumerate(spec.featurizers):
        labels = _labels_of(canonical_json(featurizer.model_dump()))
        if labels is None:
            continue
        if isinstance(labels, str):
            clashes.append((i, labels))
            continue
        repeated = [label for label in labels if label in owners]
        twice = [label for label, n in Counter(labels).items() if n > 1]
        if repeated:
            where, cls = owners[repeated[0]]
            count = sum(owners[label] == (where, cls) for label in repeated)
            preset = where.startswith("the preset")
            fix = "drop it or use preset: null" if preset else "drop one of them"
            clashes.append(
                (
                    i,
                    f"{featurizer.cls} repeats {count} feature labels of {where} "
                    f"({cls.rsplit('.', 1)[-1]}, e.g. {repeated[0]!r}); {fix}",
                )
            )
        elif twice:
            clashes.append((i, f"{featurizer.cls} gives the feature label {twice[0]!r} twice"))
        for label in labels:
            owners.setdefault(label, (f"featurizers.{i}", featurizer.cls))
    return clashes
