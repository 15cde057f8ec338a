"""The ``split``, ``models`` and ``stability`` sections: how surrogates learn and the hull."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from matscreen.tasks.spec.base import Strict, located, resolve_path


class SplitSpec(Strict):
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


#: Learning algorithms a model spec may name.
MODEL_ALGORITHMS = (
    "xgboost",
    "random_forest",
    "gradient_boosting",
    "kernel_ridge",
    "gaussian_process",
)


_ParamValue = bool | int | float | str | None


class ModelSpec(Strict):
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
            raise located(
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


class MPReferenceSpec(Strict):
    """Reference phases read from the Materials Project (mp-api) for the candidates'
    chemical systems and all their sub-systems: each phase's formula and formation
    energy per atom. Pages are kept like those of an ``mp`` source, so a killed read
    resumes and a re-read of the same release fetches nothing."""

    endpoint: str | None = None
    api_key_env: str = "MP_API_KEY"
    chunk_size: int = Field(default=1000, ge=1, le=10000)


class StabilitySpec(Strict):
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
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"elemental reference file not found: {path}")
        return path

    @field_validator("entries")
    @classmethod
    def _entry_files(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        paths = [resolve_path(v, info) for v in value]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f"reference entry file not found: {missing[0]}")
        return paths
