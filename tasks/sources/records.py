"""Plain records that sources yield: snapshots, structure records and per-record failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceSnapshot:
    """One read of one source: what was read, its content hash, licence and citation.

    Attributes
    ----------
    source
        The source's name in the campaign spec.
    kind
        Source type (``csv_cif``, ``mp``, ``aflow``, ``optimade``, ``files``, ``prototypes``).
    location
        File path or endpoint that was read.
    sha256
        Hash of the file's bytes, or of the retrieved documents in canonical JSON.
    n_rows
        Number of documents (rows, entries, files) read, failed ones included.
    query
        What was asked of the source (columns, filter, fields, limit).
    database_version
        The database release the server reported (e.g. Materials Project's ``db_version``),
        empty for files.
    """

    source: str
    kind: str
    location: str
    sha256: str
    size_bytes: int
    n_rows: int
    retrieved_at: str
    licence: str
    citation: tuple[str, ...]
    description: str = ""
    query: dict[str, Any] = field(default_factory=dict)
    database_version: str = ""


@dataclass(frozen=True)
class StructureRecord:
    """One structure with its reported properties, as read from a source.

    Attributes
    ----------
    source, source_id
        Source name and the id the source gives the record; ``id`` joins them.
    row
        1-based position of the record among the source's data rows.
    structure
        The pymatgen ``Structure.as_dict()`` of the structure.
    properties
        Reported values under normalized names (None when the source has none); see
        :data:`matscreen.tasks.sources.properties.PROPERTY_UNITS`. Flags such as ``is_metal``
        are stored as 1.0 / 0.0.
    units
        Unit of each property.
    extra
        Source metadata that is not a property: space group, AFLOW ``aurl``, MP
        ``last_updated``, OPTIMADE ``last_modified`` … (JSON types only).
    duplicate_of
        Id of an earlier record holding the same structure (set by deduplication).
    """

    source: str
    source_id: str
    row: int
    formula: str
    structure: dict[str, Any]
    properties: dict[str, float | None]
    units: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)
    duplicate_of: str | None = None

    @property
    def id(self) -> str:
        """The record's id, unique across sources: ``source:source_id``."""
        return f"{self.source}:{self.source_id}"


@dataclass(frozen=True)
class RecordFailure:
    """A record that could not be read or processed, with the reason."""

    source: str
    source_id: str
    row: int
    stage: str
    message: str

    @property
    def id(self) -> str:
        """The failed record's id: ``source:source_id``."""
        return f"{self.source}:{self.source_id}"


@dataclass(frozen=True)
class IngestResult:
    """What one source read produced."""

    snapshot: SourceSnapshot
    records: list[StructureRecord]
    failures: list[RecordFailure]
