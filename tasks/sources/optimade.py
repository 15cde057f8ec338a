"""Read structures from any OPTIMADE provider's ``structures`` endpoint.

OPTIMADE (https://www.optimade.org) is the common REST API of materials databases (Materials
Cloud, OQMD, Alexandria, NOMAD, …). A read asks ``{base}/v1/info`` once for the API version and
provider, then ``{base}/v1/structures`` with the spec's filter, and follows ``links.next`` page
by page until the provider says there is no more. Each entry becomes a pymatgen structure
through the ``optimade`` package's adapter; provider-specific fields (``_oqmd_band_gap`` …)
give the properties the spec maps to normalized names.

Screening needs one element on every site, so entries that describe disorder — a species with
several chemical symbols, a vacancy, a concentration below one, alternative site assemblies —
become :class:`RecordFailure` items that say so, and the read goes on.

Incremental re-runs
-------------------
When the read has a state folder and the spec's ``incremental`` is true (the default), the
entries read are saved by id (:mod:`matscreen.tasks.sources.entry_cache`), per versioned base
URL, filter and response fields. A later read first lists the query's entries with
``response_fields=id,last_modified``, following ``links.next``, then fetches full documents
only for ids that are new, whose ``last_modified`` changed or that have none, by batches of at
most :data:`MAX_IDS_PER_REQUEST` ids (``id="a" OR id="b" …``, following ``links.next`` should
the provider cap the page size). The other documents are the saved ones; ids no longer listed
are dropped. Records come in the order of the listing, which is the order of a full read, so
the snapshot's hash is the same whether a document was saved or fetched.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from pydantic import ValidationError
from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.sources.entry_cache import (
    EntryCache,
    fetch_in_batches,
    read_incrementally,
)
from matscreen.tasks.sources.http import JsonClient, redact
from matscreen.tasks.spec import OptimadeSourceSpec

#: Standard fields asked of every provider: what the structure adapter needs, plus the
#: metadata kept with each record. Provider fields named in the spec are added to these.
STRUCTURE_FIELDS = (
    "lattice_vectors",
    "cartesian_site_positions",
    "species",
    "species_at_sites",
    "nsites",
    "dimension_types",
    "nperiodic_dimensions",
    "elements",
    "nelements",
    "chemical_formula_reduced",
    "structure_features",
    "last_modified",
    "immutable_id",
)

#: Fields of the listing that starts an incremental read.
LISTING_FIELDS = "id,last_modified"

#: Most ids asked for in one request of an incremental read, which keeps the URL short.
MAX_IDS_PER_REQUEST = 100

log = logging.getLogger(__name__)

_VERSIONED = re.compile(r"/v\d+(\.\d+){0,2}$")

#: Structure features that mean a site does not hold exactly one known element.
_UNORDERED_FEATURES = {
    "disorder": "disorder",
    "assemblies": "alternative site assemblies",
    "unknown_positions": "unknown site positions",
}


def versioned_base(base_url: str) -> str:
    """Return the versioned base URL: ``base_url`` itself if it ends with ``/vN``, else ``/v1``.

    >>> versioned_base("https://optimade.materialscloud.org/main/")
    'https://optimade.materialscloud.org/main/v1'
    >>> versioned_base("https://oqmd.org/optimade/v1")
    'https://oqmd.org/optimade/v1'
    """
    base = base_url.rstrip("/")
    return base if _VERSIONED.search(base) else f"{base}/v1"


def next_link(page: dict[str, Any], url: str, source: str) -> str | None:
    """Return the absolute URL of the page after ``page`` (fetched from ``url``), if any.

    OPTIMADE allows ``links.next`` to be a URL string or a link object with ``href``; absent
    and null both mean the last page.

    Raises
    ------
    SourceError
        If ``links.next`` is neither null, a string nor an object with an ``href`` string.
    """
    links = page.get("links") or {}
    link = links.get("next") if isinstance(links, dict) else None
    if link is None:
        return None
    if isinstance(link, dict):
        link = link.get("href")
    if not isinstance(link, str) or not link:
        raise SourceError(
            f"source {source}: {redact(url)}: links.next is not a URL or link object: {link!r}"
        )
    return urljoin(url, link)


def describe_database(info: Any, url: str, source: str) -> tuple[str, str]:
    """Read an ``/info`` answer: the provider's prefix, and the database version text.

    The text is ``optimade <api_version>; <provider prefix>``, followed by the database name
    and version when the provider reports them (OPTIMADE 1.2's optional ``meta.database``),
    and by the serving implementation's name and version when given.

    Raises
    ------
    SourceError
        If the answer is not an OPTIMADE info response.
    """
    if not isinstance(info, dict) or not isinstance(info.get("data"), dict):
        raise SourceError(
            f"source {source}: {redact(url)} did not answer an OPTIMADE info response (no 'data')"
        )
    meta: dict[str, Any] = info["meta"] if isinstance(info.get("meta"), dict) else {}
    attributes = info["data"].get("attributes") or {}
    api_version = attributes.get("api_version") or meta.get("api_version") or "unknown"
    provider: dict[str, Any] = meta["provider"] if isinstance(meta.get("provider"), dict) else {}
    prefix = str(provider.get("prefix") or "")
    described = prefix or "unknown provider"
    database = meta.get("database")
    if isinstance(database, dict):
        named = [str(database[key]) for key in ("name", "version") if database.get(key)]
        described = " ".join([described, *named])
    text = f"optimade {api_version}; {described}"
    implementation = meta.get("implementation")
    if isinstance(implementation, dict) and implementation.get("name"):
        named = [str(implementation[key]) for key in ("name", "version") if implementation.get(key)]
        text += f"; implementation {' '.join(named)}"
    return prefix, text


def check_ordered(attributes: dict[str, Any], where: str) -> None:
    """Reject an entry whose sites do not each hold exactly one element.

    This is read from the OPTIMADE fields themselves, before conversion, so that the message
    names the species concerned as the provider wrote them.

    Raises
    ------
    RecordError
        If a species has several chemical symbols, a vacancy, a concentration other than one,
        or the entry declares disorder, assemblies or unknown positions.
    """
    problems = []
    for species in attributes.get("species") or []:
        if not isinstance(species, dict):
            continue  # a malformed species list is reported by the adapter's validation
        symbols = species.get("chemical_symbols") or []
        concentration = species.get("concentration") or [1.0] * len(symbols)
        whole = all(isinstance(c, int | float) and abs(c - 1.0) < 1e-6 for c in concentration)
        if len(symbols) != 1 or "vacancy" in symbols or not whole:
            shares = " + ".join(
                f"{symbol} {c}" for symbol, c in zip(symbols, concentration, strict=False)
            )
            problems.append(f"species {species.get('name')!r} = {shares}")
    features = attributes.get("structure_features") or []
    problems.extend(label for key, label in _UNORDERED_FEATURES.items() if key in features)
    if problems:
        shown = "; ".join(problems[:4])
        raise RecordError(
            f"{where}: disordered structure ({shown}{' …' if len(problems) > 4 else ''}); "
            "screening needs one element per site"
        )


def entry_structure(entry: dict[str, Any], where: str) -> Structure:
    """Convert an OPTIMADE structure entry into a periodic pymatgen structure.

    Raises
    ------
    RecordError
        If the entry is not a valid OPTIMADE structure, cannot be converted, or is not
        periodic.
    """
    # Imported here: the adapter package is only needed when an OPTIMADE source is read.
    from optimade.adapters import Structure as OptimadeStructure

    try:
        structure = OptimadeStructure(entry).as_pymatgen
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise RecordError(
            f"{where}: not a valid OPTIMADE structure entry ({exc.error_count()} problem(s); "
            f"first: {location}: {first['msg']})"
        ) from exc
    # The adapter hands the fields to pymatgen, whose constructors raise many exception types
    # for inconsistent input (a species name missing from `species`, wrong array shapes …);
    # any of them means this one entry is unusable, which is recorded and the read goes on.
    except Exception as exc:
        raise RecordError(
            f"{where}: cannot convert the entry to a structure ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(structure, Structure):
        raise RecordError(f"{where}: not a periodic structure (no valid lattice vectors)")
    return structure


def entry_item(
    spec: OptimadeSourceSpec, entry: Any, row: int, provider: str, structures_url: str
) -> Item:
    """Turn one entry of a ``structures`` page into a record, or a failure saying why not."""
    known_id = entry.get("id") if isinstance(entry, dict) else None
    source_id = str(known_id) if known_id not in (None, "") else f"row-{row}"
    where = f"{spec.name}:{source_id}"
    try:
        if not isinstance(entry, dict) or not isinstance(entry.get("attributes"), dict):
            raise RecordError(f"{where}: entry {row} has no attributes object")
        attributes = entry["attributes"]
        check_ordered(attributes, where)
        structure = entry_structure(entry, where)
        properties = {name: attributes.get(prop.field) for name, prop in spec.properties.items()}
        extra = {
            "provider": provider,
            "optimade_id": entry.get("id"),
            "entry_url": f"{structures_url}/{entry.get('id')}",
            "chemical_formula_reduced": attributes.get("chemical_formula_reduced"),
            "last_modified": attributes.get("last_modified"),
        }
        if attributes.get("immutable_id") is not None:
            extra["immutable_id"] = attributes["immutable_id"]
        return make_record(
            spec, source_id, row, structure, properties, extra, units=spec.provided_units()
        )
    except RecordError as exc:
        return failure(spec, source_id, row, str(exc))


def iter_optimade(spec: OptimadeSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read an OPTIMADE ``structures`` endpoint into structure records, page by page.

    The snapshot records the endpoint, the filter and fields asked, and the API version and
    provider reported by ``/info``; its hash is over the entries as received. With a state
    folder and ``spec.incremental``, only new and changed entries are fetched in full (see
    the module's description) and ``snapshot.changes`` says what changed.

    Raises
    ------
    SourceError
        If the provider cannot be reached (after retries), refuses the request, answers
        something that is not an OPTIMADE response, or repeats a page link.
    """
    base = versioned_base(spec.base_url)
    structures_url = f"{base}/structures"
    fields = [*STRUCTURE_FIELDS, *(prop.field for prop in spec.properties.values())]
    page_limit = min(spec.page_limit, spec.limit) if spec.limit else spec.page_limit
    params: dict[str, Any] = {
        "page_limit": page_limit,
        "response_fields": ",".join(dict.fromkeys(fields)),
    }
    if spec.filter:
        params["filter"] = spec.filter
    snapshot.location = structures_url
    snapshot.query.update(
        {
            "filter": spec.filter,
            "page_limit": page_limit,
            "response_fields": params["response_fields"],
            "limit": spec.limit,
        }
    )
    with JsonClient(spec.name) as client:
        info_url = f"{base}/info"
        provider, snapshot.database_version = describe_database(
            client.get_json(info_url), info_url, spec.name
        )
        pages = StructurePages(client, structures_url, spec.name)
        entries: Iterable[Any] | None = None
        if snapshot.state_dir is not None and spec.incremental:
            identity = {
                "base_url": base,
                "filter": spec.filter,
                "response_fields": params["response_fields"],
            }
            cache = EntryCache.open(Path(snapshot.state_dir), "optimade", identity)
            query = _StructuresQuery(spec, pages, params)
            read, snapshot.changes = read_incrementally(cache, query)
            entries = None if read is None else [entry for _, entry in read]
        if entries is None:
            entries = itertools.islice(pages.entries(params), spec.limit)
        for row, entry in enumerate(entries, start=1):
            snapshot.add_document(entry)
            yield entry_item(spec, entry, row, provider, structures_url)


class StructurePages:
    """The entries of ``structures`` queries, page after page through ``links.next``.

    Parameters
    ----------
    client
        The read's HTTP client.
    structures_url
        The provider's ``…/v1/structures`` URL.
    source
        The source's name, for messages.
    """

    def __init__(self, client: JsonClient, structures_url: str, source: str) -> None:
        self.client = client
        self.structures_url = structures_url
        self.source = source
        self._warned: set[str] = set()

    def entries(self, params: dict[str, Any]) -> Iterator[Any]:
        """Yield every entry of the query ``params``, asking for a page only when needed.

        Raises
        ------
        SourceError
            If a page is not an OPTIMADE response or ``links.next`` repeats a page.
        """
        url: str | None = self.structures_url
        query: dict[str, Any] | None = params
        followed: set[str] = set()
        while url is not None:
            page = self.client.get_json(url, query)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise SourceError(
                    f"source {self.source}: {redact(url)} did not answer an OPTIMADE response "
                    "(no 'data' list)"
                )
            # Providers explain surprises here, e.g. a filter field they do not know and
            # treated as unknown, which silently matches nothing.
            for warning in _page_warnings(page):
                if warning not in self._warned:
                    self._warned.add(warning)
                    log.warning("source %s: %s warns: %s", self.source, redact(url), warning)
            yield from page["data"]
            # The next link carries the filter and page position itself.
            url, query = next_link(page, url, self.source), None
            if url is not None:
                # A provider that links back to a page already read would never end the read.
                if url in followed:
                    raise SourceError(f"source {self.source}: links.next repeats {redact(url)}")
                followed.add(url)


def id_filter(ids: Sequence[str]) -> str:
    """The OPTIMADE filter that selects exactly ``ids`` (quotes and backslashes escaped).

    >>> id_filter(["oqmd-1", "oqmd-7"])
    'id="oqmd-1" OR id="oqmd-7"'
    """
    quoted = (entry_id.replace("\\", "\\\\").replace('"', '\\"') for entry_id in ids)
    return " OR ".join(f'id="{entry_id}"' for entry_id in quoted)


class _StructuresQuery:
    """A spec's ``structures`` query as an :class:`IncrementalQuery` (entries keyed by id)."""

    def __init__(self, spec: OptimadeSourceSpec, pages: StructurePages, params: dict[str, Any]):
        self.spec, self.pages, self.params = spec, pages, params
        self.source = spec.name

    def everything(self) -> Iterator[Any]:
        return itertools.islice(self.pages.entries(self.params), self.spec.limit)

    def listing(self) -> Iterator[Any]:
        listed = self.pages.entries({**self.params, "response_fields": LISTING_FIELDS})
        return itertools.islice(listed, self.spec.limit)

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The full entries of ``ids``, asked for in batches (``id="a" OR id="b" …``)."""

        def ask(batch: Sequence[str]) -> Iterator[Any]:
            query = {"filter": id_filter(batch), "page_limit": len(batch)}
            return self.pages.entries({**query, "response_fields": self.params["response_fields"]})

        batch_size = min(self.spec.page_limit, MAX_IDS_PER_REQUEST)
        return fetch_in_batches(ids, batch_size, ask, self.id_of)

    def id_of(self, entry: Any) -> str | None:
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        return entry_id if isinstance(entry_id, str) and entry_id else None

    def modified_of(self, entry: Any) -> Any:
        attributes = entry.get("attributes")
        return attributes.get("last_modified") if isinstance(attributes, dict) else None


def _page_warnings(page: dict[str, Any]) -> list[str]:
    """The texts of a page's ``meta.warnings``."""
    meta = page.get("meta")
    warnings = meta.get("warnings") if isinstance(meta, dict) else None
    if not isinstance(warnings, list):
        return []
    return [
        str(w.get("detail") or w.get("title") or w) if isinstance(w, dict) else str(w)
        for w in warnings
    ]
