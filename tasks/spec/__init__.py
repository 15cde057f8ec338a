"""The campaign spec: a YAML file validated into typed, frozen pydantic models.

A spec is checked completely before any work starts: unknown keys, wrong types and files
that do not exist are reported with the key path at fault (``sources.0.path``). Strings may
name ``${data_dir}``, replaced by the configured data folder; relative paths are taken
relative to the spec file.

The sections live in one module each: ``base`` (what they share), ``sources``,
``featurization``, ``models`` (split, models, stability), ``ranking`` (criteria,
ranking, screen) and ``campaign`` (the whole spec and how a file is loaded).
"""

from __future__ import annotations

from matscreen.tasks.spec.base import (
    PropertySpec,
    RangeSpec,
)
from matscreen.tasks.spec.campaign import (
    MAX_SPEC_BYTES,
    MAX_SPEC_VALUES,
    CampaignSpec,
    describe_errors,
    load_spec,
    spec_inputs,
    with_suggestions,
)
from matscreen.tasks.spec.featurization import (
    AUTO_PRESET,
    COMPUTED_SOURCE_KINDS,
    FEATURIZER_MODULES,
    FeaturizationSpec,
    FeaturizerSpec,
    choose_preset,
)
from matscreen.tasks.spec.models import (
    DEFAULT_ELEMENT_REFERENCES,
    HULL_PROPERTY,
    HULL_UNIT,
    MODEL_ALGORITHMS,
    ModelSpec,
    MPReferenceSpec,
    SplitSpec,
    StabilitySpec,
)
from matscreen.tasks.spec.ranking import (
    CriterionSpec,
    DiversitySpec,
    RankingSpec,
    ScreenSpec,
    SuggestSpec,
)
from matscreen.tasks.spec.sources import (
    AFLOW_PROPERTIES,
    FILE_FORMATS,
    MP_PROPERTIES,
    POOLS,
    AflowSourceSpec,
    CsvCifSourceSpec,
    FilesSourceSpec,
    MPSourceSpec,
    OptimadeFieldSpec,
    OptimadeSourceSpec,
    PrototypeSourceSpec,
    SourceSpec,
)

__all__ = [
    "AFLOW_PROPERTIES",
    "AUTO_PRESET",
    "AflowSourceSpec",
    "COMPUTED_SOURCE_KINDS",
    "CampaignSpec",
    "CriterionSpec",
    "CsvCifSourceSpec",
    "DEFAULT_ELEMENT_REFERENCES",
    "DiversitySpec",
    "FEATURIZER_MODULES",
    "FILE_FORMATS",
    "FeaturizationSpec",
    "FeaturizerSpec",
    "FilesSourceSpec",
    "HULL_PROPERTY",
    "HULL_UNIT",
    "MAX_SPEC_BYTES",
    "MAX_SPEC_VALUES",
    "MODEL_ALGORITHMS",
    "MPReferenceSpec",
    "MPSourceSpec",
    "MP_PROPERTIES",
    "ModelSpec",
    "OptimadeFieldSpec",
    "OptimadeSourceSpec",
    "POOLS",
    "PropertySpec",
    "PrototypeSourceSpec",
    "RangeSpec",
    "RankingSpec",
    "ScreenSpec",
    "SourceSpec",
    "SplitSpec",
    "StabilitySpec",
    "SuggestSpec",
    "choose_preset",
    "describe_errors",
    "load_spec",
    "spec_inputs",
    "with_suggestions",
]
