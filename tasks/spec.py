"""The campaign spec: a YAML file validated into typed, frozen pydantic models.

A spec is checked completely before any work starts: unknown keys, wrong types and files
that do not exist are reported with the key path at fault (``sources.0.path``). Strings may
name ``${data_dir}``, replaced by the configured data folder; relative paths are taken
relative to the spec file.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from matscreen.tasks.errors import SpecError
from matscreen.tasks.hashing import canonical_json, content_hash

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Strict(BaseModel):
    # Unknown keys are errors, and so are NaN and ±inf where a number is asked for (a
    # bound of .nan or .inf would only fail, or silently pass everything, later).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _located(title: str, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """Errors at key paths below the model being validated, as pydantic reports its own
    (so that a message names ``models.0.params.n_estimators``, not ``models.0``)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


class PropertySpec(_Strict):
    """Where a normalized property comes from in a source, and its unit."""

    column: str | None = None
    max_of: list[str] | None = Field(default=None, min_length=2)
    unit: str

    @model_validator(mode="after")
    def _one_origin(self) -> PropertySpec:
        if (self.column is None) == (self.max_of is None):
            raise ValueError("give exactly one of 'column' or 'max_of'")
        return self

    @property
    def columns(self) -> list[str]:
        """The source columns this property reads."""
        return [self.column] if self.column is not None else list(self.max_of or [])


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = Path((info.context or {}).get("base_dir", "."))
    return (value if value.is_absolute() else base / value).resolve()


class RangeSpec(_Strict):
    """An inclusive range of a numeric field; either end may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _bounded(self) -> RangeSpec:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min}) is above 'max' ({self.max})")
        return self


#: What a source's records are for: ``train`` (labelled records the models learn from; the
#: held-out validation split is drawn from these), ``screen`` (candidates to rank; labels are
#: optional and, where present, shown beside the predictions) or ``both``.
POOLS = ("train", "screen", "both")


class _SourceSpec(_Strict):
    """What every source names: a name, its licence and citation, an optional record limit,
    and the pool its records go to (``pool``; see :data:`POOLS`)."""

    name: str = Field(pattern=_NAME)
    licence: str
    citation: list[str] = Field(min_length=1)
    description: str = ""
    limit: int | None = Field(default=None, ge=1)
    pool: Literal["train", "screen", "both"] = "train"

    def trains(self) -> bool:
        """Whether the models learn from this source's labelled records."""
        return self.pool in ("train", "both")

    def screens(self) -> bool:
        """Whether this source's records are candidates to screen."""
        return self.pool in ("screen", "both")

    def provided_units(self) -> dict[str, str]:
        """Unit of every normalized property this source reports."""
        return {}


class _MappedSourceSpec(_SourceSpec):
    """A source whose properties come from named columns or keys, with units given."""

    properties: dict[str, PropertySpec] = Field(default_factory=dict)

    def provided_units(self) -> dict[str, str]:
        return {name: prop.unit for name, prop in self.properties.items()}


class CsvCifSourceSpec(_MappedSourceSpec):
    """A CSV file with one structure per row as CIF text, plus id and property columns."""

    kind: Literal["csv_cif"]
    path: Path
    id_column: str
    cif_column: str = "cif"

    @field_validator("path")
    @classmethod
    def _existing_file(cls, value: Path, info: ValidationInfo) -> Path:
        path = _resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        return path


#: Structure file formats the ``files`` source reads.
FILE_FORMATS = ("auto", "cif", "poscar", "pymatgen_json", "extxyz", "csv", "jsonl", "aflowlib")


class FilesSourceSpec(_MappedSourceSpec):
    """Local structure files: one file, or every file in a folder matching ``pattern``.

    ``format: auto`` decides by name and content: ``.cif``; ``POSCAR``/``CONTCAR``/``.vasp``;
    ``.json`` (a pymatgen Structure dict, a list of them, or an aflowlib.json entry);
    ``.extxyz``/``.xyz``; ``.csv`` (a ``cif`` column); ``.jsonl`` (one JSON object a line
    with a pymatgen ``structure`` dict); ``aflowlib.out``/``.out`` (AFLOW key=value text).
    Properties map normalized names to CSV columns, JSON keys or extxyz info keys.
    """

    kind: Literal["files"]
    path: Path
    pattern: str = "*"
    format: Literal[FILE_FORMATS] = "auto"  # type: ignore[valid-type]
    id_key: str | None = None
    structure_key: str | None = None

    @field_validator("path")
    @classmethod
    def _existing_path(cls, value: Path, info: ValidationInfo) -> Path:
        path = _resolve_path(value, info)
        if not path.exists():
            raise ValueError(f"file or folder not found: {path}")
        return path


#: Properties a Materials Project summary document gives under matscreen's normalized names.
MP_PROPERTIES = (
    "band_gap",
    "formation_energy_per_atom",
    "energy_above_hull",
    "energy_per_atom",
    "is_metal",
    "is_stable",
    "is_gap_direct",
)


class MPSourceSpec(_SourceSpec):
    """The Materials Project summary endpoint, through mp-api's MPRester.

    The API key is read from the environment variable ``api_key_env`` (never from the spec);
    ``endpoint`` defaults to mp-api's (``MP_API_ENDPOINT`` or api.materialsproject.org).
    Query fields are ANDed; ``ranges`` bound summary fields (``band_gap``,
    ``energy_above_hull``, ``formation_energy_per_atom``, ``num_sites`` …).
    """

    kind: Literal["mp"]
    endpoint: str | None = None
    api_key_env: str = "MP_API_KEY"
    material_ids: list[str] | None = None
    elements: list[str] | None = None
    exclude_elements: list[str] | None = None
    chemsys: list[str] | None = None
    formula: list[str] | None = None
    ranges: dict[str, RangeSpec] = Field(default_factory=dict)
    is_stable: bool | None = None
    is_metal: bool | None = None
    properties: list[str] = Field(
        default_factory=lambda: [
            "band_gap",
            "formation_energy_per_atom",
            "energy_above_hull",
            "is_metal",
            "is_stable",
        ]
    )
    chunk_size: int = Field(default=1000, ge=1, le=10000)
    resume: bool = True
    licence: str = "CC-BY-4.0"
    citation: list[str] = Field(
        default_factory=lambda: ["A. Jain et al., APL Materials 1, 011002 (2013)"], min_length=1
    )

    @field_validator("properties")
    @classmethod
    def _known_properties(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(MP_PROPERTIES))
        if unknown:
            raise ValueError(f"unknown MP properties {unknown} (known: {list(MP_PROPERTIES)})")
        return value

    def provided_units(self) -> dict[str, str]:
        from matscreen.tasks.sources.properties import PROPERTY_UNITS

        return {name: PROPERTY_UNITS[name] for name in self.properties}


#: AFLOW keywords and the normalized properties they become.
AFLOW_PROPERTIES = {
    "Egap": "band_gap",
    "enthalpy_formation_atom": "formation_energy_per_atom",
}


class AflowSourceSpec(_SourceSpec):
    """AFLOW's database through its AFLUX search API.

    ``species`` must all be present; ``nspecies`` fixes their number; ``ranges`` bound
    AFLOW keywords (``Egap``, ``enthalpy_formation_atom`` …); ``catalog`` restricts to one
    AFLOW catalogue (ICSD, LIB1 … LIB7). Entries' ``Egap`` and ``enthalpy_formation_atom``
    become ``band_gap`` (eV) and ``formation_energy_per_atom`` (eV/atom). ``incremental``
    (with a state folder, as ``matscreen ingest`` and campaigns give): keep the entries read,
    and on a re-run list ``auid`` and ``aflowlib_date`` first, then fetch in full only the
    entries that are new or changed; false fetches every entry every time.
    """

    kind: Literal["aflow"]
    endpoint: str = "https://aflow.org/API/aflux/"
    species: list[str] | None = None
    nspecies: int | None = Field(default=None, ge=1)
    catalog: str | None = None
    ranges: dict[str, RangeSpec] = Field(default_factory=dict)
    page_size: int = Field(default=100, ge=1, le=10000)
    incremental: bool = True
    citation: list[str] = Field(
        default_factory=lambda: [
            "S. Curtarolo et al., Comput. Mater. Sci. 58, 227 (2012)",
            "F. Rose et al., Comput. Mater. Sci. 137, 362 (2017)",
        ],
        min_length=1,
    )

    def provided_units(self) -> dict[str, str]:
        from matscreen.tasks.sources.properties import PROPERTY_UNITS

        return {name: PROPERTY_UNITS[name] for name in AFLOW_PROPERTIES.values()}


class OptimadeFieldSpec(_Strict):
    """Which OPTIMADE field (often provider-specific, ``_oqmd_band_gap``) gives a property."""

    field: str
    unit: str


class OptimadeSourceSpec(_SourceSpec):
    """Any OPTIMADE provider's ``structures`` endpoint, with a filter, paged by links.next.

    ``base_url`` is the provider's base (``https://optimade.materialscloud.org/main``) or its
    versioned base (``…/v1``). ``properties`` maps normalized names to provider fields.
    ``incremental`` (with a state folder, as ``matscreen ingest`` and campaigns give): keep
    the entries read, and on a re-run list ids and ``last_modified`` first, then fetch in full
    only the entries that are new or changed; false fetches every entry every time.
    """

    kind: Literal["optimade"]
    base_url: str = Field(pattern=r"^https?://")
    filter: str = ""
    page_limit: int = Field(default=100, ge=1, le=10000)
    properties: dict[str, OptimadeFieldSpec] = Field(default_factory=dict)
    incremental: bool = True

    def provided_units(self) -> dict[str, str]:
        return {name: prop.unit for name, prop in self.properties.items()}


class PrototypeSourceSpec(_SourceSpec):
    """Hypothetical candidates made by putting elements on the sites of a prototype.

    ``prototype`` is a built-in name (``perovskite_ABX3`` …) or a structure file whose
    species act as site labels; ``sites`` maps each label to the elements it may hold.
    Combinations are enumerated lazily; with ``charge_neutral`` only those for which common
    oxidation states sum to zero are kept.
    """

    kind: Literal["prototypes"]
    prototype: str
    # Hypothetical structures carry no labels: they are candidates to screen.
    pool: Literal["train", "screen", "both"] = "screen"
    sites: dict[str, list[str]] = Field(min_length=1)
    charge_neutral: bool = True
    distinct_elements: bool = True
    licence: str = "CC0-1.0"
    citation: list[str] = Field(
        default_factory=lambda: ["hypothetical structures generated by prototype decoration"],
        min_length=1,
    )

    @field_validator("prototype")
    @classmethod
    def _prototype_file(cls, value: str, info: ValidationInfo) -> str:
        if "/" in value or "." in value:  # a file path, not a built-in name like perovskite_ABX3
            path = _resolve_path(Path(value), info)
            if not path.is_file():
                raise ValueError(f"prototype file not found: {path}")
            return str(path)
        return value

    @field_validator("pool")
    @classmethod
    def _no_labels_to_learn(cls, value: str) -> str:
        if value != "screen":
            raise ValueError("decorated prototypes have no labels to learn from; use 'screen'")
        return value


_SOURCE_KINDS = ("csv_cif", "files", "mp", "aflow", "optimade", "prototypes")

SourceSpec = Annotated[
    CsvCifSourceSpec
    | FilesSourceSpec
    | MPSourceSpec
    | AflowSourceSpec
    | OptimadeSourceSpec
    | PrototypeSourceSpec,
    Field(discriminator="kind"),
]


class SplitSpec(_Strict):
    """How the held-out test set is chosen, before any fitting.

    ``random`` holds out each record by the hash of (seed, record id). ``composition`` and
    ``chemsys`` hold out whole groups by the hash of (seed, group): every record of one
    reduced formula (all polymorphs of SrTiO3), or of one chemical system (every Sr-Ti-O
    phase), lands on the same side, so held-out metrics measure how the models do on
    chemistries they have not seen. Cross-validation inside the training part then folds by
    the same groups.
    """

    method: Literal["random", "composition", "chemsys"] = "random"
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = 0


#: Modules a spec may name featurizer classes from.
FEATURIZER_MODULES = ("matminer.featurizers.", "matscreen.tasks.featurize.")


class FeaturizerSpec(_Strict):
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


class FeaturizationSpec(_Strict):
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
            raise _located("FeaturizationSpec", problems)
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


#: Learning algorithms a model spec may name.
MODEL_ALGORITHMS = (
    "xgboost",
    "random_forest",
    "gradient_boosting",
    "kernel_ridge",
    "gaussian_process",
)

_ParamValue = bool | int | float | str | None


class ModelSpec(_Strict):
    """One surrogate model: the property it predicts and how it is fitted.

    ``kind`` is ``regressor`` (one model of the label), ``two_stage_gap`` (a classifier
    separates labels at or below ``metal_threshold`` — metals, for a band gap — from the
    rest, a regressor is fitted on the rest, and a row whose probability of a gap is below
    ``gap_decision`` — chosen by cross-validation when not given — gets 0) or
    ``classifier`` (labels are 0/1, or 1 where the label is at or below
    ``positive_at_most``, e.g. energy above hull <= 0.025 eV/atom for "stable").

    Features are imputed (medians of the training rows, except for xgboost, which treats
    NaN as missing), optionally standardized (``scale``; on by default for kernel ridge and
    Gaussian processes) and optionally reduced to the ``select_features`` columns most
    correlated with the label — all inside the fitted pipeline, so each cross-validation
    fold learns them from its own training rows only.

    ``search`` tunes ``search_space`` (parameter -> candidate values; the algorithm's
    default space if empty) by ``cv_folds``-fold cross-validation on the training part:
    ``random`` samples ``search_iterations`` candidates, ``halving`` runs successive
    halving over them. ``interval`` chooses the conformal method of the prediction
    intervals (``cv``: out-of-fold residuals of the same folds; ``split``: a calibration
    part held back from fitting; ``none``) and ``interval_level`` their default coverage.
    ``interval_width`` sizes them: ``adaptive`` (the default) scales each row's interval by
    the error a small difficulty model, cross-fitted on the out-of-fold residuals, expects
    for that row (normalized conformal scores); ``constant`` gives every row the same width.
    For ``two_stage_gap`` it sizes the regressor's interval of the gap given that there is
    one (calibrated on the rows that truly have a gap, used by the ranking), while the
    displayed interval of the combined prediction keeps one width per Mondrian category.
    """

    target: str
    algorithm: Literal[MODEL_ALGORITHMS] = "xgboost"  # type: ignore[valid-type]
    kind: Literal["regressor", "two_stage_gap", "classifier"] = "regressor"
    params: dict[str, _ParamValue] = Field(default_factory=dict)
    clip_min: float | None = None
    metal_threshold: float = Field(default=0.0, ge=0.0)
    gap_decision: float | None = Field(default=None, gt=0.0, lt=1.0)
    positive_at_most: float | None = None
    scale: bool | None = None
    select_features: int | None = Field(default=None, ge=1)
    cv_folds: int = Field(default=5, ge=2, le=20)
    search: Literal["none", "random", "halving"] = "none"
    search_iterations: int = Field(default=12, ge=1, le=500)
    search_space: dict[str, list[_ParamValue]] = Field(default_factory=dict)
    interval: Literal["cv", "split", "none"] = "cv"
    interval_level: float = Field(default=0.9, gt=0.0, lt=1.0)
    interval_width: Literal["adaptive", "constant"] = "adaptive"

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.kind != "regressor" and self.algorithm == "kernel_ridge":
            needs = "" if self.kind == "classifier" else f" (kind {self.kind!r} needs one)"
            raise ValueError(
                f"kernel_ridge cannot be a classifier{needs}; choose another algorithm"
            )
        if self.kind != "classifier" and self.positive_at_most is not None:
            raise ValueError("'positive_at_most' applies to kind 'classifier' only")
        empty = sorted(name for name, values in self.search_space.items() if not values)
        if empty:
            raise ValueError(f"search_space: no candidate values for {empty}")
        return self

    @model_validator(mode="after")
    def _valid_params(self) -> ModelSpec:
        from matscreen.tasks.models.params import default_space_problem, param_problems

        problems = param_problems(self.algorithm, self.kind, self.params, self.search_space)
        if self.search != "none" and not self.search_space:
            problem = default_space_problem(self.algorithm, self.kind)
            problems += [(("search_space",), problem)] if problem else []
        if problems:
            raise _located(
                "ModelSpec",
                [(path, message, _value_at(self, path)) for path, message in problems],
            )
        return self


def _value_at(spec: ModelSpec, path: tuple[str | int, ...]) -> Any:
    value: Any = getattr(spec, str(path[0]))
    for key in path[1:]:
        value = value[key]
    return value


#: The derived property a stability section adds: distance to the convex hull of the known
#: phases, from the predicted formation energy (eV/atom; negative below the hull).
HULL_PROPERTY = "energy_above_hull"
HULL_UNIT = "eV/atom"

#: The elemental reference entries used when a stability section names none.
DEFAULT_ELEMENT_REFERENCES = Path("materials_project") / "elemental_reference_entries.json.gz"


class MPReferenceSpec(_Strict):
    """Reference phases read from the Materials Project (mp-api) for the candidates'
    chemical systems and all their sub-systems: each phase's formula and formation
    energy per atom. Pages are kept like those of an ``mp`` source, so a killed read
    resumes and a re-read of the same release fetches nothing."""

    endpoint: str | None = None
    api_key_env: str = "MP_API_KEY"
    chunk_size: int = Field(default=1000, ge=1, le=10000)


class StabilitySpec(_Strict):
    """Thermodynamic stability of each candidate as its energy above the convex hull.

    ``formation_energy`` names the model whose target is the formation energy (per atom,
    or per cell of the record's structure with ``per: cell``, as the CMR perovskites give
    it). The hull is built per chemical system from the elemental references
    (``elements``: pymatgen ComputedEntry dicts by element; default the Materials Project
    elements in the data folder, ``materials_project/elemental_reference_entries.json.gz``),
    the labelled training records (``training_phases``), pymatgen entry files
    (``entries``: JSON lists of ComputedEntry / ComputedStructureEntry / PDEntry dicts) and,
    with ``mp``, the Materials Project's phases of the candidates' chemical systems. All of
    them must be on one energy scale: formation energies are measured from the elemental
    references. The derived property ``energy_above_hull`` (eV/atom) may then appear in the
    criteria.
    """

    formation_energy: str
    per: Literal["atom", "cell"] = "atom"
    elements: Path | None = Field(default=None, validate_default=True)
    training_phases: bool = True
    entries: list[Path] = Field(default_factory=list)
    mp: MPReferenceSpec | None = None

    @field_validator("elements")
    @classmethod
    def _element_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            data_dir = (info.context or {}).get("data_dir")
            if data_dir is None:
                return None
            value = Path(data_dir) / DEFAULT_ELEMENT_REFERENCES
        path = _resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"elemental reference file not found: {path}")
        return path

    @field_validator("entries")
    @classmethod
    def _entry_files(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        paths = [_resolve_path(v, info) for v in value]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"reference entry file not found: {missing[0]}")
        return paths


class CriterionSpec(_Strict):
    """A range a candidate's predicted property must fall in."""

    property: str
    min: float | None = None
    max: float | None = None
    unit: str

    @model_validator(mode="after")
    def _bounded(self) -> CriterionSpec:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"'min' ({self.min}) must be below 'max' ({self.max})")
        return self


class DiversitySpec(_Strict):
    """How the shortlist is spread over chemistries.

    ``by`` groups candidates by chemical system (``O-Sr-Ti``) or by prototype (the
    candidate's ``prototype`` where its table has one, else its anonymized formula,
    ``ABC3``), and ``cap`` is the most candidates of one group the shortlist takes.
    ``mmr_lambda`` picks by maximal marginal relevance on the candidates' feature vectors:
    each next pick maximizes λ·score − (1 − λ)·(similarity to the closest pick so far), so
    1 ranks by score alone and 0 by dissimilarity alone; ``metric`` is the distance between
    standardized feature vectors. Both may be given.
    """

    by: Literal["chemsys", "prototype", "none"] = "none"
    cap: int | None = Field(default=None, ge=1)
    mmr_lambda: float | None = Field(default=None, ge=0.0, le=1.0)
    metric: Literal["euclidean", "cosine"] = "euclidean"

    @model_validator(mode="after")
    def _cap_with_groups(self) -> DiversitySpec:
        if self.by != "none" and self.cap is None:
            raise ValueError(f"'by: {self.by}' needs a 'cap' (candidates per group)")
        if self.by == "none" and self.cap is not None:
            raise ValueError("'cap' needs 'by' (chemsys or prototype)")
        return self


class SuggestSpec(_Strict):
    """Next experiments: ``n`` candidates by P(success) + ``kappa`` · (outcome entropy)."""

    n: int = Field(ge=1)
    kappa: float = Field(default=1.0, ge=0.0)
    exclude_shortlist: bool = True


class RankingSpec(_Strict):
    """How held-out candidates are ranked, and the shortlist spread.

    ``method``: ``probability`` (the default: probability of meeting every criterion,
    from the models' prediction intervals), ``margin`` (smallest distance of a point
    prediction to a bound; for models trained with ``interval: none``) or ``pareto``
    (non-dominated fronts of the per-criterion ``pareto_objective``, best front first).
    ``interval_level`` is the coverage of the intervals the probabilities are computed
    from; by default each model's own.
    """

    method: Literal["probability", "margin", "pareto"] = "probability"
    pareto_objective: Literal["probability", "margin"] = "probability"
    interval_level: float | None = Field(default=None, gt=0.0, lt=1.0)
    diversity: DiversitySpec = DiversitySpec()
    suggest: SuggestSpec | None = None

    @model_validator(mode="after")
    def _objective_for_pareto(self) -> RankingSpec:
        # The default is accepted with any method, so that a recorded (fully dumped) spec
        # loads again; a non-default objective only makes sense for Pareto ranking.
        if self.pareto_objective != "probability" and self.method != "pareto":
            raise ValueError(f"'pareto_objective' applies to method 'pareto', not {self.method!r}")
        return self

    def needs_uncertainty(self) -> str | None:
        """The key that needs prediction intervals (``method``, ``suggest``), if any."""
        if self.method == "probability" or (
            self.method == "pareto" and self.pareto_objective == "probability"
        ):
            return "method"
        return "suggest" if self.suggest is not None else None


class ScreenSpec(_Strict):
    """How the candidates of ``screen`` sources are streamed through the screen.

    ``chunk_size`` records are read, recorded, featurized, predicted and placed on the
    hull at a time; memory grows with it, not with the number of candidates. (On 60,000
    double perovskites, 10,000 against 20,000: peak memory of all processes 3.1 against
    3.5 GB, wall time 265 against 260 s.)
    """

    chunk_size: int = Field(default=10_000, ge=1, le=1_000_000)


class CampaignSpec(_Strict):
    """A screening campaign: sources, split, featurization, models, criteria, shortlist."""

    name: str = Field(pattern=_NAME)
    description: str = ""
    sources: list[SourceSpec] = Field(min_length=1)
    split: SplitSpec = SplitSpec()
    featurization: FeaturizationSpec = FeaturizationSpec()
    models: list[ModelSpec] = Field(min_length=1)
    criteria: list[CriterionSpec] = Field(min_length=1)
    shortlist_size: int = Field(default=50, ge=1)
    ranking: RankingSpec = RankingSpec()
    stability: StabilitySpec | None = None
    screen: ScreenSpec = ScreenSpec()

    @model_validator(mode="wrap")
    @classmethod
    def _choose_preset(cls, data: Any, handler: Any) -> CampaignSpec:
        spec = handler(data)
        if spec.featurization.preset != AUTO_PRESET:
            return spec
        screened = [source.kind for source in spec.sources if source.screens()]
        try:
            featurization = spec.featurization.resolved(*choose_preset(screened))
        except ValidationError as exc:  # reported at the featurization's own key paths
            problems = [
                (("featurization", *error["loc"]), error["msg"].removeprefix("Value error, "), None)
                for error in exc.errors()
            ]
            raise _located("CampaignSpec", problems) from None
        return spec.model_copy(update={"featurization": featurization})

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        names = [source.name for source in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        units: dict[str, str] = {}
        for i, source in enumerate(self.sources):
            for name, unit in source.provided_units().items():
                if units.setdefault(name, unit) != unit:
                    raise ValueError(
                        f"sources.{i}.properties.{name}.unit: {unit!r}, but another "
                        f"source gives {name} in {units[name]!r}"
                    )
        properties = set(units)
        if not any(source.trains() for source in self.sources):
            raise ValueError(
                "no source has pool 'train' or 'both': the models need records to learn from"
            )
        targets = [model.target for model in self.models]
        if len(set(targets)) != len(targets):
            raise ValueError(f"each target may have one model, got {targets}")
        for i, target in enumerate(targets):
            if target not in properties:
                raise ValueError(
                    f"models.{i}.target: {target!r} is not a property of any source "
                    f"(known: {sorted(properties)})"
                )
        derived = set()
        if self.stability is not None:
            energy = self.stability.formation_energy
            if energy not in targets:
                raise ValueError(
                    f"stability.formation_energy: {energy!r} has no model (targets: {targets})"
                )
            if self.models[targets.index(energy)].kind != "regressor":
                raise ValueError(
                    f"stability.formation_energy: the {energy} model must be a regressor"
                )
            derived.add(HULL_PROPERTY)
            units.setdefault(HULL_PROPERTY, HULL_UNIT)
        for i, criterion in enumerate(self.criteria):
            if criterion.property == HULL_PROPERTY and self.stability is None:
                raise ValueError(
                    f"criteria.{i}.property: {HULL_PROPERTY} needs a 'stability' section "
                    "(which model gives the formation energy, and the reference phases)"
                )
            if criterion.property not in targets and criterion.property not in derived:
                raise ValueError(
                    f"criteria.{i}.property: {criterion.property!r} has no model "
                    f"(targets: {targets})"
                )
            if criterion.unit != units[criterion.property]:
                raise ValueError(
                    f"criteria.{i}.unit: {criterion.unit!r}, but {criterion.property} is in "
                    f"{units[criterion.property]!r}"
                )
        needs = self.ranking.needs_uncertainty()
        if needs is not None:
            for i, model in enumerate(self.models):
                wanted = any(c.property == model.target for c in self.criteria) or (
                    self.stability is not None
                    and model.target == self.stability.formation_energy
                    and any(c.property == HULL_PROPERTY for c in self.criteria)
                )
                if wanted and model.interval == "none":
                    raise ValueError(
                        f"ranking.{needs}: needs prediction intervals, but "
                        f"models.{i}.interval is 'none' ({model.target})"
                    )
        return self

    def units(self) -> dict[str, str]:
        """Unit of every property the sources define, and of the derived hull distance."""
        units = {name: unit for s in self.sources for name, unit in s.provided_units().items()}
        if self.stability is not None:
            units.setdefault(HULL_PROPERTY, HULL_UNIT)
        return units

    def fingerprint(self) -> str:
        """Return the sha256 of the spec's canonical content (paths as resolved)."""
        return content_hash(self.model_dump(mode="json"))


def _substitute(value: Any, variables: dict[str, str], where: str) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, variables, f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, variables, f"{where}.{i}") for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in variables:
                raise SpecError(
                    f"{where}: unknown variable ${{{name}}} (known: {sorted(variables)})"
                )
            return variables[name]

        return _VARIABLE.sub(replace, value)
    return value


def _describe(error: dict[str, Any]) -> str:
    # A tagged union puts the tag (``sources.0.mp.…``) in the path; the user wrote none.
    loc = error["loc"]
    parts = [
        part
        for i, part in enumerate(loc)
        if not (i and isinstance(loc[i - 1], int) and part in _SOURCE_KINDS)
    ]
    where = ".".join(str(part) for part in parts)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    if error["type"] == "value_error":
        return f"{where}: {message}" if where else message
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"{where}: {message} (got {shown})"


def describe_errors(exc: ValidationError, prefix: str = "") -> str:
    """One message naming the key path and problem of every error in ``exc``."""
    described = []
    for error in exc.errors():
        if prefix:
            error = {**error, "loc": (prefix, *error["loc"])}
        described.append(_describe(error))
    return "; ".join(described)


#: Largest spec file read, and most values it may expand to (YAML aliases repeat a value
#: without repeating its text: a few lines can otherwise expand to billions).
MAX_SPEC_BYTES = 2**20
MAX_SPEC_VALUES = 200_000


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own spans lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _within_size(raw: Any, path: Path) -> None:
    """Refuse a loaded spec that expands to more than :data:`MAX_SPEC_VALUES` values.

    Raises
    ------
    SpecError
        Naming the file.
    """
    count, pending = 0, [raw]
    while pending:
        value = pending.pop()
        count += 1
        if count > MAX_SPEC_VALUES:
            raise SpecError(
                f"campaign spec {path} expands to more than {MAX_SPEC_VALUES:,} values "
                "(YAML aliases repeating large parts?)"
            )
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def spec_inputs(spec: CampaignSpec) -> dict[str, Path]:
    """The local files and folders a campaign reads, by what reads them (``source NAME``)."""
    found = {}
    for source in spec.sources:
        path = getattr(source, "path", None)
        if path is not None:
            found[f"source {source.name}"] = Path(path)
    return found


def load_spec(path: Path, data_dir: Path) -> CampaignSpec:
    """Read, substitute and validate a campaign spec file.

    Parameters
    ----------
    path
        The YAML file.
    data_dir
        Folder that ``${data_dir}`` in the spec stands for.

    Returns
    -------
    CampaignSpec
        The validated spec, with every file path resolved and checked.

    Raises
    ------
    SpecError
        If the file is missing, a folder, unreadable or not YAML, or the spec is invalid;
        the message names the file and every key at fault.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # at most a little more than any spec needs
            data = handle.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            raise SpecError(
                f"campaign spec {path} is larger than {MAX_SPEC_BYTES // 2**20} MiB: not a spec"
            )
        raw = yaml.safe_load(data.decode("utf-8"))
        _within_size(raw, path)
    except FileNotFoundError as exc:
        raise SpecError(f"campaign spec not found: {path}") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"campaign spec {path} is a folder, not a YAML file") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"campaign spec {path} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise SpecError(f"campaign spec {path}: cannot read it ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"campaign spec {path} is not valid YAML: {_yaml_problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"campaign spec {path} must be a mapping of keys, got {type(raw).__name__}")
    try:
        data = _substitute(raw, {"data_dir": str(Path(data_dir).resolve())}, "")
    except SpecError as exc:
        raise SpecError(f"campaign spec {path}: {exc}") from exc
    try:
        return CampaignSpec.model_validate(
            data, context={"base_dir": path.resolve().parent, "data_dir": Path(data_dir).resolve()}
        )
    except ValidationError as exc:
        raise SpecError(f"campaign spec {path}: {describe_errors(exc)}") from exc


def with_suggestions(spec: CampaignSpec, n: int | None) -> CampaignSpec:
    """Return the spec a run uses when asked for ``n`` suggested next experiments.

    ``n`` sets ``ranking.suggest.n``; ``kappa`` and ``exclude_shortlist`` stay as the spec
    gives them (their defaults when it has no ``suggest``). The result is validated again,
    so it is a spec like any loaded one: it is what a run records, and reproducing the run
    repeats the suggestions.

    Parameters
    ----------
    spec
        The loaded campaign spec.
    n
        Number of suggestions; None returns ``spec`` unchanged.

    Returns
    -------
    CampaignSpec
        The effective spec.

    Raises
    ------
    SpecError
        If ``n`` is below 1, or a model the criteria use makes no prediction intervals
        (``interval: none``), which suggestions need.
    """
    if n is None:
        return spec
    data = spec.model_dump(mode="json")
    data["ranking"]["suggest"] = {**(data["ranking"]["suggest"] or {}), "n": n}
    try:
        return CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            f"campaign {spec.name} with {n} suggestions: {describe_errors(exc)}"
        ) from exc
