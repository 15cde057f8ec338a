"""The one interface every structure source implements, and what they share.

A source kind is a generator function ``read(spec, snapshot)`` that yields
:class:`StructureRecord` and :class:`RecordFailure` items one at a time (so 10^5 generated
candidates never sit in memory at once) and tells ``snapshot`` — a
:class:`SnapshotBuilder` — every raw document it read. When the generator is exhausted,
``snapshot.finish()`` gives the :class:`SourceSnapshot`: location, query, database version,
sha256 of everything read, licence and citation.

:func:`open_source` picks the reader for a spec's ``kind``; :func:`read_source` reads a
whole source into an :class:`IngestResult`.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.hashing import canonical_json, file_sha256
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.sources.properties import PROPERTY_UNITS, as_number
from matscreen.tasks.sources.records import (
    IngestResult,
    RecordFailure,
    RefreshCounts,
    SourceSnapshot,
    StructureRecord,
)

Item: TypeAlias = StructureRecord | RecordFailure

#: source kind -> "module:function" of its reader, imported on first use so that reading
#: local files never imports mp-api or the OPTIMADE package.
READERS: dict[str, str] = {
    "csv_cif": "matscreen.tasks.sources.csv_cif:iter_csv_cif",
    "files": "matscreen.tasks.sources.files:iter_files",
    "mp": "matscreen.tasks.sources.mp:iter_mp",
    "aflow": "matscreen.tasks.sources.aflow:iter_aflow",
    "optimade": "matscreen.tasks.sources.optimade:iter_optimade",
    "prototypes": "matscreen.tasks.sources.prototypes:iter_prototypes",
}

#: source kind -> "module:function" of its planner, for kinds that can name each item (in
#: the snapshot) before making it: ``plan(spec, snapshot)`` yields :class:`Plan` items.
PLANNERS: dict[str, str] = {
    "prototypes": "matscreen.tasks.sources.prototypes:plan_prototypes",
}


@dataclass(frozen=True)
class Plan:
    """An item of a read, named but not made yet: the ``source_id`` of its record, the raw
    ``document`` it comes from (already added to the snapshot) and ``build()``, which makes
    the item."""

    source_id: str
    document: Any
    build: Callable[[], Item]


@dataclass
class SnapshotBuilder:
    """Collects what one read of a source saw, and gives its :class:`SourceSnapshot`.

    Readers call :meth:`add_document` for every raw document (CSV row, API document,
    file) in the order read, and may set :attr:`database_version` and add to
    :attr:`query`. The snapshot's sha256 is over the documents' canonical JSON (or bytes),
    so two reads that saw the same data get the same hash. :attr:`state_dir`, when given, is
    a folder where a reader of a remote source may keep what it already fetched, so that a
    killed read resumes instead of starting over, or a re-run fetches only what changed; a
    reader that re-reads incrementally sets :attr:`changes` to what it found.
    """

    spec: Any
    location: str
    query: dict[str, Any] = field(default_factory=dict)
    database_version: str = ""
    retrieved_at: str = field(default_factory=utc_now)
    state_dir: Path | None = None
    changes: RefreshCounts | None = None
    n_documents: int = 0
    n_items: int = 0
    size_bytes: int = 0
    file_sha256: str | None = None
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)

    def set_file(self, path: Path) -> None:
        """Identify a one-file read by the file's own sha256 and size (checkable with sha256sum)."""
        self.file_sha256 = file_sha256(path)
        self.size_bytes = path.stat().st_size

    def add_document(self, document: Any) -> None:
        """Fold one raw document (bytes, str or JSON-like value) into the snapshot's hash."""
        if isinstance(document, bytes):
            data = document
        elif isinstance(document, str):
            data = document.encode("utf-8")
        else:
            data = canonical_json(document).encode("utf-8")
        self._digest.update(len(data).to_bytes(8, "little"))
        self._digest.update(data)
        self.n_documents += 1
        if self.file_sha256 is None:
            self.size_bytes += len(data)

    def finish(self) -> SourceSnapshot:
        """Return the snapshot of everything added so far."""
        return SourceSnapshot(
            source=self.spec.name,
            kind=self.spec.kind,
            location=self.location,
            sha256=self.file_sha256 or self._digest.hexdigest(),
            size_bytes=self.size_bytes,
            n_rows=self.n_items,
            retrieved_at=self.retrieved_at,
            licence=self.spec.licence,
            citation=tuple(self.spec.citation),
            description=self.spec.description,
            query=self.query,
            database_version=self.database_version,
        )


def make_record(
    spec: Any,
    source_id: str,
    row: int,
    structure: Structure,
    properties: dict[str, Any],
    extra: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
) -> StructureRecord:
    """Build a :class:`StructureRecord`, checking the structure and converting the values.

    Parameters
    ----------
    spec
        The source's spec (gives the source name).
    source_id, row
        The record's id at the source and its 1-based position in the read.
    structure
        The parsed structure; it must hold at least one site and be ordered (no partial
        occupancies or vacancies), since featurizers and models need one species per site.
    properties
        Reported values under normalized names; missing values may be None.
    extra
        Source metadata kept with the record (JSON types).
    units
        Units of properties not in :data:`PROPERTY_UNITS` (from the spec's mapping).

    Raises
    ------
    RecordError
        If the structure is empty or disordered, or a value is not a number; the message
        names the source and id.
    """
    where = f"{spec.name}:{source_id}"
    if len(structure) == 0:
        raise RecordError(f"{where}: structure holds no sites")
    if not structure.is_ordered:
        disordered = [
            f"site {i} {site.species}" for i, site in enumerate(structure) if not site.is_ordered
        ]
        raise RecordError(
            f"{where}: disordered structure (partial occupancy or vacancy at "
            f"{', '.join(disordered[:3])}{' …' if len(disordered) > 3 else ''}); "
            "screening needs one species per site"
        )
    return record_from_dict(
        spec,
        source_id,
        row,
        structure.composition.reduced_formula,
        structure.as_dict(),
        properties,
        extra,
        units,
    )


def record_from_dict(
    spec: Any,
    source_id: str,
    row: int,
    formula: str,
    structure: dict[str, Any],
    properties: dict[str, Any],
    extra: dict[str, Any] | None = None,
    units: dict[str, str] | None = None,
) -> StructureRecord:
    """:func:`make_record` for a structure already known to be ordered and non-empty, given
    as its ``Structure.as_dict()`` with its reduced formula.

    Raises
    ------
    RecordError
        If a value is not a number; the message names the source and id.
    """
    where = f"{spec.name}:{source_id}"
    units = {**PROPERTY_UNITS, **(units or {})}
    values: dict[str, float | None] = {}
    for name, value in properties.items():
        if name not in units:
            raise RecordError(f"{where}: property {name!r} has no known unit")
        try:
            values[name] = as_number(value)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: property {name} is not a number: {value!r}") from exc
    return StructureRecord(
        source=spec.name,
        source_id=str(source_id),
        row=row,
        formula=formula,
        structure=structure,
        properties=values,
        units={name: units[name] for name in values},
        extra=dict(extra or {}),
    )


def failure(spec: Any, source_id: str, row: int, message: str) -> RecordFailure:
    """Return the :class:`RecordFailure` of one unreadable record at ingest."""
    return RecordFailure(spec.name, str(source_id), row, "ingest", message)


Reader = Callable[[Any, SnapshotBuilder], Iterator[Item]]


def reader_for(kind: str, registry: dict[str, str] = READERS) -> Reader:
    """Return the reader function of a source kind (or its planner, from :data:`PLANNERS`).

    Raises
    ------
    SourceError
        If no reader is registered for ``kind``.
    """
    try:
        module_name, _, function = registry[kind].partition(":")
    except KeyError as exc:
        raise SourceError(f"unknown source kind {kind!r} (known: {sorted(registry)})") from exc
    return getattr(importlib.import_module(module_name), function)


class SourceRead:
    """One streaming read of a source: iterate for records, then ask for the snapshot.

    >>> read = open_source(spec)               # doctest: +SKIP
    >>> for item in read: ...                  # doctest: +SKIP
    >>> read.snapshot                          # doctest: +SKIP
    """

    def __init__(self, spec: Any, state_dir: Path | None = None) -> None:
        self.spec = spec
        self.builder = SnapshotBuilder(spec, describe_location(spec), state_dir=state_dir)
        self._reader = reader_for(spec.kind)
        self._done = False
        self._ids: set[str] = set()

    def __iter__(self) -> Iterator[Item]:
        items: Iterator[Item]
        if self.plannable:
            items = (plan.build() for plan in self.plans())
        else:
            items = self._counted(self._reader(self.spec, self.builder))
        for item in items:
            yield self.checked(item)

    @property
    def plannable(self) -> bool:
        """Whether the source can name its items before making them (:meth:`plans`)."""
        return self.spec.kind in PLANNERS

    def plans(self) -> Iterator[Plan]:
        """The read's items as :class:`Plan` (a plannable source only): each is counted and
        in the snapshot when yielded; pass what ``build()`` makes through :meth:`checked`."""
        return self._counted(reader_for(self.spec.kind, PLANNERS)(self.spec, self.builder))

    def skip(self, plans: Sequence[Plan]) -> None:
        """Note planned items that are not built (an earlier run finished them): a later
        record with one of their ids is a repeat, as if they had been built."""
        self._ids.update(plan.source_id for plan in plans)

    def checked(self, item: Item) -> Item:
        """The item, or a failure if a record with its id came earlier in this read."""
        if isinstance(item, StructureRecord):
            if item.source_id in self._ids:
                return failure(
                    self.spec,
                    item.source_id,
                    item.row,
                    f"{item.id}: duplicate id (row {item.row}); the first record with it is kept",
                )
            self._ids.add(item.source_id)
        return item

    def _counted(self, items: Iterator[Any]) -> Iterator[Any]:
        limit = getattr(self.spec, "limit", None)
        count = 0
        for item in items:
            count += 1
            self.builder.n_items = count
            yield item
            if limit is not None and count >= limit:
                break
        self._done = True

    @property
    def snapshot(self) -> SourceSnapshot:
        """The snapshot of the read; only once the records have all been iterated."""
        if not self._done:
            raise SourceError(f"source {self.spec.name}: snapshot asked before the read ended")
        return self.builder.finish()

    @property
    def changes(self) -> RefreshCounts | None:
        """New, changed, unchanged and removed entries of an incremental read; else None."""
        return self.builder.changes


def describe_location(spec: Any) -> str:
    """Return where a spec reads from: its file path, endpoint or prototype."""
    for attribute in ("path", "endpoint", "base_url", "prototype"):
        value = getattr(spec, attribute, None)
        if value is not None:
            return str(value)
    return spec.kind


def open_source(spec: Any, state_dir: Path | None = None) -> SourceRead:
    """Start a streaming read of the source ``spec`` describes (resumable in ``state_dir``)."""
    return SourceRead(spec, state_dir)


def read_source(
    spec: Any, state_dir: Path | None = None, progress: Callable[[Item], None] | None = None
) -> IngestResult:
    """Read a whole source: its snapshot, structure records and per-record failures.

    ``progress``, when given, is called with every item as it is read (a progress bar).

    Raises
    ------
    SourceError
        If the source as a whole cannot be read (missing file, server refusing the key,
        retries exhausted); a single bad record becomes a :class:`RecordFailure` instead.
    """
    read = open_source(spec, state_dir)
    records: list[StructureRecord] = []
    failures: list[RecordFailure] = []
    for item in read:
        if isinstance(item, StructureRecord):
            records.append(item)
        else:
            failures.append(item)
        if progress is not None:
            progress(item)
    return IngestResult(
        snapshot=read.snapshot, records=records, failures=failures, changes=read.changes
    )


def iter_chunks(
    read: SourceRead, size: int
) -> Iterator[tuple[list[StructureRecord], list[RecordFailure]]]:
    """The records and failures of a streaming read, ``size`` items at a time (the last
    chunk may be smaller; a read with no item yields nothing)."""
    records: list[StructureRecord] = []
    failures: list[RecordFailure] = []
    for item in read:
        if isinstance(item, StructureRecord):
            records.append(item)
        else:
            failures.append(item)
        if len(records) + len(failures) >= size:
            yield records, failures
            records, failures = [], []
    if records or failures:
        yield records, failures
