"""AFLOW: the AFLUX search API and its incremental re-reads.

Entries are parsed by :mod:`matscreen.tasks.sources.aflowlib`.

AFLUX (Rose et al., Comput. Mater. Sci. 137, 362 (2017)) is queried through the URL query
string: a *matchbook* of keywords, some with arguments that filter (``,`` is AND, ``:`` is OR,
``a*`` means at least ``a`` and ``*b`` at most ``b``), followed by directives (``paging(n,k)``
for page ``n`` of ``k`` entries, ``format(json)``). Every keyword named is returned. The
answer is an object whose keys ``"i of N"`` number the entries over the whole result.

Incremental re-runs
-------------------
When the read has a state folder and the spec's ``incremental`` is true (the default), the
entries read are saved by auid (:mod:`matscreen.tasks.sources.entry_cache`), per endpoint and
matchbook. A later read first lists the query's ``auid`` and ``aflowlib_date`` (the same
filters and page size, so the same order and pages), then fetches full entries only for
auids that are new, whose ``aflowlib_date`` changed or that have none, by batches of at most
:data:`MAX_IDS_PER_REQUEST` (``auid('aflow:…':'aflow:…')`` in front of the usual matchbook, so
an entry comes back with exactly the keywords of a full read). The other entries are the saved
ones; auids no longer listed are dropped. The snapshot's hash is the same whether an entry was
saved or fetched.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from pymatgen.core import Element

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.sources.aflowlib import KEYWORD, parse_aflowlib_entry
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.sources.entry_cache import (
    EntryCache,
    fetch_in_batches,
    read_incrementally,
)
from matscreen.tasks.sources.http import JsonClient
from matscreen.tasks.spec import AflowSourceSpec

#: Keywords asked of AFLUX besides the filters: what builds the structure, the properties and
#: the record's metadata. ``auid`` comes first because AFLUX sorts the result by the first
#: keyword of the matchbook, and a unique key keeps the pages of one query disjoint.
AFLUX_KEYWORDS: tuple[str, ...] = (
    "auid",
    "aurl",
    "compound",
    "species",
    "composition",
    "natoms",
    "geometry",
    "positions_fractional",
    "Egap",
    "Egap_type",
    "enthalpy_formation_atom",
    "spacegroup_relax",
    "catalog",
    "aflowlib_version",
    "aflowlib_date",
)


#: Keywords of the listing that starts an incremental read: the id and the entry's date.
LISTING_KEYWORDS: tuple[str, ...] = ("auid", "aflowlib_date")


#: Most auids asked for in one request of an incremental read, which keeps the URL short.
MAX_IDS_PER_REQUEST = 100


_CATALOG = re.compile(r"[A-Za-z0-9]+")


_PAGE_KEY = re.compile(r"\s*(\d+)\s+of\s+(\d+)\s*")


#: An auid that can be quoted in a matchbook as it is (``aflow:0003b1ab0ca0d60a``).
_AUID = re.compile(r"[A-Za-z0-9:._-]+")


def _number(value: float) -> str:
    """A bound as AFLUX reads it: plain decimal digits, no exponent."""
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return np.format_float_positional(value, trim="-")


def _range_argument(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_number(low)}*,*{_number(high)}"
    if low is not None:
        return f"{_number(low)}*"
    return f"*{_number(high)}"  # type: ignore[arg-type]


def page_size(spec: AflowSourceSpec) -> int:
    """Entries per AFLUX page: the spec's page size, or its limit when that is smaller."""
    return min(spec.page_size, spec.limit) if spec.limit is not None else spec.page_size


def aflux_matchbook(
    spec: AflowSourceSpec,
    keywords: Sequence[str] = AFLUX_KEYWORDS,
    auids: Sequence[str] | None = None,
) -> str:
    """The matchbook of a spec's query: filters and requested keywords, without paging.

    Parameters
    ----------
    spec
        The source's spec, which gives the filters.
    keywords
        The keywords asked for besides the filtered ones; the first must be ``auid``, by
        which AFLUX sorts the result.
    auids
        When given, only these entries are asked for: ``auid('aflow:…':'aflow:…')``.

    Raises
    ------
    SourceError
        If a species is not an element, the catalog or a range keyword is not a plain name.
    """
    auid_filter = None
    if auids is not None:
        auid_filter = ":".join(f"'{auid}'" for auid in auids)
    arguments: dict[str, str | None] = {keywords[0]: auid_filter}
    if spec.species:
        for symbol in spec.species:
            if not Element.is_valid_symbol(symbol):
                raise SourceError(f"source {spec.name}: species {symbol!r} is not an element")
        arguments["species"] = ",".join(dict.fromkeys(spec.species))
    if spec.nspecies is not None:
        arguments["nspecies"] = str(spec.nspecies)
    if spec.catalog is not None:
        if not _CATALOG.fullmatch(spec.catalog):
            raise SourceError(f"source {spec.name}: catalog {spec.catalog!r} is not a name")
        arguments["catalog"] = spec.catalog.upper()
    for keyword, bounds in spec.ranges.items():
        if not KEYWORD.fullmatch(keyword):
            raise SourceError(f"source {spec.name}: range keyword {keyword!r} is not a name")
        if arguments.get(keyword) is not None:
            raise SourceError(f"source {spec.name}: {keyword} is filtered twice")
        arguments[keyword] = _range_argument(bounds.min, bounds.max)
    for keyword in keywords:
        arguments.setdefault(keyword, None)
    return ",".join(
        keyword if argument is None else f"{keyword}({argument})"
        for keyword, argument in arguments.items()
    )


def aflux_query(
    spec: AflowSourceSpec, page: int, matchbook: str | None = None, size: int | None = None
) -> str:
    """The AFLUX summons for one page of a query (the URL's query string, unescaped).

    The query is the spec's own unless ``matchbook`` is given; pages hold ``size`` entries,
    by default :func:`page_size`.

    >>> aflux_query(AflowSourceSpec(kind="aflow", name="a", licence="x",
    ...     species=["Si", "O"], nspecies=2), 1)  # doctest: +ELLIPSIS
    'auid,species(Si,O),nspecies(2),aurl,compound,...,paging(1,100),format(json)'
    """
    if page < 1:
        raise SourceError(f"source {spec.name}: AFLUX pages are numbered from 1, not {page}")
    matchbook = matchbook if matchbook is not None else aflux_matchbook(spec)
    size = size if size is not None else page_size(spec)
    return f"{matchbook},paging({page},{size}),format(json)"


def aflux_url(
    spec: AflowSourceSpec, page: int, matchbook: str | None = None, size: int | None = None
) -> str:
    """The URL of one page: the endpoint, ``?`` and the summons, its operators unescaped."""
    base = spec.endpoint if spec.endpoint.endswith(("/", "?")) else spec.endpoint + "/"
    summons = aflux_query(spec, page, matchbook, size)
    return base.rstrip("?") + "?" + quote(summons, safe="(),:*!$'")


def read_aflux_page(body: Any, where: str) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
    """Split one AFLUX answer into ``(index, entry)`` pairs and the result's total size.

    AFLUX answers ``{"1 of 912": {...}, "2 of 912": {...}}``; the indices run over the
    whole result, so they tell which entries a page holds and when the last was reached.
    A JSON list of entries (no total) and an empty answer are accepted too.

    Raises
    ------
    SourceError
        If the answer is neither, a key is not ``"i of N"``, the totals differ or an entry
        is not an object; the message names ``where``.
    """
    if body is None or body == [] or body == {}:
        return [], None
    if isinstance(body, list):
        entries = list(enumerate(body, start=1))
        total = None
    elif isinstance(body, dict):
        entries = []
        totals = set()
        for key, entry in body.items():
            match = _PAGE_KEY.fullmatch(str(key))
            if match is None:
                raise SourceError(
                    f"{where}: AFLUX answer key {str(key)[:60]!r} is not 'i of N' "
                    f"(an error from the server? {str(body)[:200]})"
                )
            entries.append((int(match.group(1)), entry))
            totals.add(int(match.group(2)))
        if len(totals) != 1:
            raise SourceError(f"{where}: AFLUX answer mixes result totals {sorted(totals)}")
        total = totals.pop()
        entries.sort(key=lambda pair: pair[0])
    else:
        raise SourceError(f"{where}: AFLUX answered {type(body).__name__}, not a page of entries")
    for index, entry in entries:
        if not isinstance(entry, dict):
            raise SourceError(f"{where}: AFLUX entry {index} is not an object: {entry!r:.80}")
    return entries, total


def iter_aflow(spec: AflowSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read an AFLUX query page by page into structure records.

    Pages are requested until one holds fewer than the page size, the ``"i of N"`` keys
    reach ``N``, or ``spec.limit`` entries were read. An entry without a structure (no
    geometry or positions) or with inconsistent data becomes a :class:`RecordFailure`.
    ``snapshot.query`` holds the matchbook, the first page's summons, the page size, the
    limit and the number of pages requested; ``snapshot.database_version`` the distinct
    ``aflowlib_version`` values of the entries, comma-separated (empty when they carry none).
    With a state folder and ``spec.incremental``, only new and changed entries are fetched
    in full (see the module's description) and ``snapshot.changes`` says what changed.

    Raises
    ------
    SourceError
        If the server fails permanently, answers something that is not an AFLUX page, does
        not page as asked, or ends the result before the total it announced.
    """
    size = page_size(spec)
    matchbook = aflux_matchbook(spec)
    snapshot.query.update(
        {
            "matchbook": matchbook,
            "summons": aflux_query(spec, 1),
            "page_size": size,
            "limit": spec.limit,
        }
    )
    versions: set[str] = set()
    seen: set[str] = set()
    with JsonClient(spec.name) as client:
        entries: Iterable[tuple[int, dict[str, Any]]] | None = None
        if snapshot.state_dir is not None and spec.incremental:
            identity = {"endpoint": spec.endpoint, "matchbook": matchbook}
            cache = EntryCache.open(Path(snapshot.state_dir), "aflow", identity)
            query = _AfluxQuery(client, spec, snapshot)
            entries, snapshot.changes = read_incrementally(cache, query)
        if entries is None:
            entries = aflux_entries(client, spec, matchbook, size, spec.limit, snapshot)
        for row, (index, entry) in enumerate(entries, start=1):
            snapshot.add_document(entry)
            source_id = _entry_id(entry, index)
            if source_id in seen:
                yield failure(spec, source_id, row, f"AFLUX entry {index} repeats {source_id}")
                continue
            seen.add(source_id)
            version = entry.get("aflowlib_version")
            if version:
                versions.add(str(version))
                snapshot.database_version = ", ".join(sorted(versions))
            yield _record(spec, source_id, row, index, entry)


def aflux_entries(
    client: JsonClient,
    spec: AflowSourceSpec,
    matchbook: str,
    size: int,
    limit: int | None = None,
    snapshot: SnapshotBuilder | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(index, entry)`` of every entry a matchbook selects, asking page after page.

    Stops after ``limit`` entries, on a page shorter than ``size`` or when the
    ``"i of N"`` keys reach ``N``. ``snapshot.query["pages"]``, when a snapshot is given,
    counts the pages asked for.

    Raises
    ------
    SourceError
        If the server fails permanently, answers something that is not an AFLUX page, does
        not page as asked, repeats a page, or ends the result before the total it announced.
    """
    read = 0
    total: int | None = None
    seen: set[str] = set()
    for page in itertools.count(1):
        url = aflux_url(spec, page, matchbook, size)
        where = f"source {spec.name}: {url}"
        entries, page_total = read_aflux_page(client.get_json(url), where)
        if snapshot is not None:
            snapshot.query["pages"] = page
        total = page_total if page_total is not None else total
        _check_page(entries, total, page, size, read, where)
        if not entries:
            return
        fresh = 0
        for index, entry in entries:
            read += 1
            source_id = _entry_id(entry, index)
            fresh += source_id not in seen
            seen.add(source_id)
            yield index, entry
            if limit is not None and read >= limit:
                return
        if fresh == 0:
            raise SourceError(f"{where}: page {page} repeats entries already read")
        if len(entries) < size or (total is not None and entries[-1][0] >= total):
            return


def _entry_id(entry: dict[str, Any], index: int) -> str:
    """The id of an AFLUX entry: its auid, else its aurl, else its position."""
    return str(entry.get("auid") or entry.get("aurl") or f"entry {index}")


class _AfluxQuery:
    """The matchbook of a spec as an :class:`IncrementalQuery` (entries keyed by auid)."""

    def __init__(self, client: JsonClient, spec: AflowSourceSpec, snapshot: SnapshotBuilder):
        self.client, self.spec, self.snapshot = client, spec, snapshot
        self.source = spec.name
        self.size = page_size(spec)

    def _entries(self, matchbook: str) -> Iterator[dict[str, Any]]:
        pages = aflux_entries(
            self.client, self.spec, matchbook, self.size, self.spec.limit, self.snapshot
        )
        return (entry for _, entry in pages)

    def everything(self) -> Iterator[dict[str, Any]]:
        return self._entries(aflux_matchbook(self.spec))

    def listing(self) -> Iterator[dict[str, Any]]:
        return self._entries(aflux_matchbook(self.spec, LISTING_KEYWORDS))

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The full entries of ``ids``, asked for in batches of the spec's keywords."""
        batch_size = min(self.size, MAX_IDS_PER_REQUEST)

        def ask(batch: Sequence[str]) -> Iterator[dict[str, Any]]:
            matchbook = aflux_matchbook(self.spec, auids=batch)
            return (e for _, e in aflux_entries(self.client, self.spec, matchbook, batch_size))

        return fetch_in_batches(ids, batch_size, ask, self.id_of)

    def id_of(self, entry: dict[str, Any]) -> str | None:
        auid = entry.get("auid")
        return auid if isinstance(auid, str) and _AUID.fullmatch(auid) else None

    def modified_of(self, entry: Any) -> Any:
        return entry.get("aflowlib_date")


def _record(
    spec: AflowSourceSpec, source_id: str, row: int, index: int, entry: dict[str, Any]
) -> Item:
    try:
        structure, properties, extra = parse_aflowlib_entry(entry)
        return make_record(spec, source_id, row, structure, properties, extra)
    except RecordError as exc:
        return failure(spec, source_id, row, f"AFLUX entry {index}: {exc}")


def _check_page(
    entries: list[tuple[int, dict[str, Any]]],
    total: int | None,
    page: int,
    size: int,
    read: int,
    where: str,
) -> None:
    """Check that a numbered page holds the entries asked for, and that none are missing."""
    if total is None:
        return
    first = (page - 1) * size + 1
    if entries and entries[0][0] != first:
        raise SourceError(
            f"{where}: page {page} starts at entry {entries[0][0]}, not {first}; "
            "the server does not page as asked"
        )
    last = entries[-1][0] if entries else read
    if last < total and len(entries) < size:
        raise SourceError(
            f"{where}: AFLUX announced {total} entries but page {page} ends the result after "
            f"{last} (does the server cap the page size below {size}?)"
        )
