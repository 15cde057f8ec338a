"""The ``sources`` section: one model per kind of structure source."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from matscreen.tasks.spec.base import NAME_PATTERN, PropertySpec, RangeSpec, Strict, resolve_path

#: What a source's records are for: ``train`` (labelled records the models learn from; the
#: held-out validation split is drawn from these), ``screen`` (candidates to rank; labels are
#: optional and, where present, shown beside the predictions) or ``both``.
POOLS = ("train", "screen", "both")


class _SourceSpec(Strict):
    """What every source names: a name, its licence and citation, an optional record limit,
    and the pool its records go to (``pool``; see :data:`POOLS`)."""

    name: str = Field(pattern=NAME_PATTERN)
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
        path = resolve_path(value, info)
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
        path = resolve_path(value, info)
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


class OptimadeFieldSpec(Strict):
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
            path = resolve_path(Path(value), info)
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


SOURCE_KINDS = ("csv_cif", "files", "mp", "aflow", "optimade", "prototypes")


SourceSpec = Annotated[
    CsvCifSourceSpec
    | FilesSourceSpec
    | MPSourceSpec
    | AflowSourceSpec
    | OptimadeSourceSpec
    | PrototypeSourceSpec,
    Field(discriminator="kind"),
]
