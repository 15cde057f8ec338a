"""What every section of a spec shares: strict models, key-path errors, paths and ranges."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Strict(BaseModel):
    # Unknown keys are errors, and so are NaN and ±inf where a number is asked for (a
    # bound of .nan or .inf would only fail, or silently pass everything, later).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def located(
    title: str, problems: Sequence[tuple[tuple[str | int, ...], str, Any]]
) -> ValidationError:
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


class PropertySpec(Strict):
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


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = Path((info.context or {}).get("base_dir", "."))
    return (value if value.is_absolute() else base / value).resolve()


class RangeSpec(Strict):
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
