"""Plain records that sources yield: snapshots, structure records and per-record failures."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from matscreen.tasks.hashing import fast_canonical_json, structure_hash


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
    formula
        pymatgen's reduced formula of the structure (``Composition.reduced_formula``);
        deduplication and the training-pool match group records by it.
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

    @cached_property
    def id(self) -> str:
        """The record's id, unique across sources: ``source:source_id`` (made once, so that
        the many maps keyed or valued by it share one string)."""
        return f"{self.source}:{self.source_id}"

    def field_values(self) -> dict[str, Any]:
        """The record's fields by name (the values themselves, not copies): what the
        catalog stores of it."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @cached_property
    def fields_json(self) -> str | None:
        """The canonical JSON of :meth:`field_values`, made once (a reading process makes
        it ahead of the flow); None when a field holds something other than plain JSON
        data (the catalog then normalizes it)."""
        return fast_canonical_json(self.field_values())

    @cached_property
    def structure_sha256(self) -> str:
        """:func:`~matscreen.tasks.hashing.structure_hash` of the structure, computed once
        (the deduplicator and the feature store both key on it)."""
        return structure_hash(self.structure)


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
class RefreshCounts:
    """How an incremental read of a remote query compares with the previous read of it.

    Attributes
    ----------
    listed
        Entries the provider lists for the query now.
    new
        Listed entries that the previous read did not have.
    changed
        Entries of the previous read whose document is different now.
    unchanged
        Entries whose document is the one read before, taken from the saved copy or
        fetched again to check (an entry without a modification time is always fetched).
    removed
        Entries of the previous read that the provider no longer lists.
    fetched
        Full documents fetched over the network.
    """

    listed: int
    new: int
    changed: int
    unchanged: int
    removed: int
    fetched: int

    def describe(self) -> str:
        """One line for a summary.

        >>> counts = RefreshCounts(listed=97, new=2, changed=1, unchanged=94, removed=1, fetched=3)
        >>> counts.describe()
        '2 new, 1 changed, 94 unchanged, 1 removed; 3 documents fetched'
        """
        return (
            f"{self.new} new, {self.changed} changed, {self.unchanged} unchanged, "
            f"{self.removed} removed; {self.fetched} documents fetched"
        )


@dataclass(frozen=True)
class IngestResult:
    """What one source read produced.

    ``changes`` is set when the read was incremental (a remote source re-read with its saved
    entries); it is None for a full read.
    """

    snapshot: SourceSnapshot
    records: list[StructureRecord]
    failures: list[RecordFailure]
    changes: RefreshCounts | None = None
