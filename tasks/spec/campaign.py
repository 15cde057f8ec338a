"""The whole campaign spec, and how a YAML file becomes one."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from matscreen.tasks.errors import SpecError
from matscreen.tasks.hashing import content_hash
from matscreen.tasks.spec.base import NAME_PATTERN, Strict, located
from matscreen.tasks.spec.featurization import AUTO_PRESET, FeaturizationSpec, choose_preset
from matscreen.tasks.spec.models import (
    HULL_PROPERTY,
    HULL_UNIT,
    ModelSpec,
    SplitSpec,
    StabilitySpec,
)
from matscreen.tasks.spec.ranking import CriterionSpec, RankingSpec, ScreenSpec
from matscreen.tasks.spec.sources import SOURCE_KINDS, SourceSpec

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class CampaignSpec(Strict):
    """A screening campaign: sources, split, featurization, models, criteria, shortlist."""

    name: str = Field(pattern=NAME_PATTERN)
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
            raise located("CampaignSpec", problems) from None
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


def _describe(error: Mapping[str, Any]) -> str:
    # A tagged union puts the tag (``sources.0.mp.…``) in the path; the user wrote none.
    loc = error["loc"]
    parts = [
        part
        for i, part in enumerate(loc)
        if not (i and isinstance(loc[i - 1], int) and part in SOURCE_KINDS)
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
