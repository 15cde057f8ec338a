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
        Source type (``csv_cif`` …).
    location
        File path or endpoint that was read.
    sha256
        Hash of the file's bytes (or of the retrieved documents).
    query
        What was asked of the source (columns, limit, filter).
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
        Reported values under normalized names (None when the source has none).
    units
        Unit of each property.
    """

    source: str
    source_id: str
    row: int
    formula: str
    structure: dict[str, Any]
    properties: dict[str, float | None]
    units: dict[str, str]

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
