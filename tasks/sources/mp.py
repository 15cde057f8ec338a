"""Read structures from the Materials Project's summary endpoint, through mp-api's MPRester.

What it reads
-------------
``GET <endpoint>/materials/summary/``, the endpoint behind ``MPRester().materials.summary``,
with the filters of an :class:`~matscreen.tasks.spec.MPSourceSpec` as the endpoint's query
parameters: ``material_ids``, ``formula``, ``chemsys``, ``elements`` and
``exclude_elements`` (comma-separated lists), ``<field>_min`` / ``<field>_max`` for each
entry of ``ranges`` (``num_sites`` and the other aliases of ``MPRester.search`` are
translated to their summary field names, e.g. ``nsites``), ``is_stable`` and ``is_metal``.
Only the fields screening needs are asked for: ``material_id``, ``structure``,
``formula_pretty``, ``symmetry``, ``last_updated``, ``deprecated`` and the spec's
``properties``, whose normalized names are Materials Project field names. The database release
comes from ``GET <endpoint>/heartbeat`` (``db_version``).

Each document becomes one record whose id is its ``material_id``. Documents saved without one
(such as the summary documents in the shared data folder) get ``struct-`` and the first 16 hex
digits of :func:`~matscreen.tasks.hashing.structure_hash` instead, marked with
``extra["id_origin"] = "structure_hash"``; an MP id is never made up. A document whose
structure cannot be built becomes a :class:`RecordFailure` and the read goes on.

Pointing it at another endpoint
-------------------------------
Set ``endpoint`` in the spec (a mirror, a proxy, a local server speaking the same API); when
it is absent, mp-api's default applies: the ``MP_API_ENDPOINT`` environment variable, else
``https://api.materialsproject.org/``. The API key is read from the environment variable the
spec names in ``api_key_env`` (``MP_API_KEY`` by default). It is sent only in the
``X-API-KEY`` header and never appears in a message, log record, snapshot, record or saved
page. MPRester contacts only the endpoint when it starts (two ``/heartbeat`` requests, without
the key); the S3 bulk download that ``search()`` starts for a query without filters is never
used, since each page is one GET request with an explicit offset and size.

Paging and resumption
---------------------
Documents are fetched one page of ``chunk_size`` at a time (``_skip`` / ``_limit``, sorted on
``material_id`` so that pages do not overlap), and each page's records are yielded before the
next page is asked for. When the read has a state folder and ``resume`` is true, every page is
saved, complete or not at all, as ``<state_dir>/mp/<key>/page-00000.json``,
``page-00001.json`` …, with ``<key>`` the content hash of the endpoint, the query, the fields,
the page size and the database release. A later read with the same key reads the saved pages
from disk and asks the server only from the first page that is missing, so a read killed on
page 700 of 800 does not start over.

The key includes the database release because a page is only a valid continuation of earlier
pages of the same release: a new release adds, removes and corrects documents, which shifts
every later offset and changes the documents themselves. After a release the key changes, the
old pages are ignored and the query is fetched again from the start. A server that reports no
release cannot be told apart from its next one, so nothing is saved for it.

Retries
-------
mp-api's own session retries only HTTP 429, 502 and 504 and connection errors, three times
with a 0.1 s backoff factor, sleeping inside urllib3 for as long as any ``Retry-After`` asks;
HTTP 500 and 503 and a body that is not valid JSON reach the caller at once (as
``MPRestError`` and ``orjson.JSONDecodeError``), and a refused key is an ``MPRestError`` whose
text holds the status. So MPRester is given a session without retries, and each page
request is retried here with :data:`RETRY_POLICY` (exponential backoff, ``Retry-After``
honoured, capped) on 429, 5xx, connection errors and truncated or invalid bodies. HTTP 401 and
403 (a refused key) and 400 (a query the server rejects) are not retried: they end the read
with one :class:`SourceError`.

Reference phases
----------------
:func:`read_reference_documents` reads, for a convex hull, the phases of given chemical systems
(``chemsys``, never deprecated documents) with only ``material_id``, ``formula_pretty`` and
``formation_energy_per_atom``: no structures. It goes through the same client, retries and
saved pages as a source read; a long list of systems is split over several queries of at
most :data:`CHEMSYS_PER_QUERY` systems each (mp-api does not split ``chemsys`` itself, and a
server refuses a URL that is too long), each query with its own saved pages.
"""

from __future__ import annotations

import logging
import math
import os
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import requests
from emmet.core.summary import SummaryDoc
from mp_api.client import MPRester
from mp_api.client.core.exceptions import MPRestError
from mp_api.client.core.utils import validate_api_key, validate_endpoint, validate_ids

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder
from matscreen.tasks.sources.http import (
    JsonClient,
    RetryPolicy,
    Transient,
    is_transient,
    retry_after_seconds,
    with_retries,
)
from matscreen.tasks.sources.mp_pages import SORT_FIELD, page_store, pages
from matscreen.tasks.sources.mp_records import summary_record
from matscreen.tasks.sources.records import SourceSnapshot
from matscreen.tasks.spec import MPReferenceSpec, MPSourceSpec

log = logging.getLogger(__name__)


T = TypeVar("T")


#: Summary fields every read asks for, besides the spec's properties.
BASE_FIELDS = (
    "material_id",
    "structure",
    "formula_pretty",
    "symmetry",
    "last_updated",
    "deprecated",
)


#: ``MPRester.materials.summary.search`` range names -> the summary fields they bound.
RANGE_ALIASES = {
    "num_sites": "nsites",
    "num_elements": "nelements",
    "formation_energy": "formation_energy_per_atom",
    "total_energy": "energy_per_atom",
    "uncorrected_energy": "uncorrected_energy_per_atom",
    "equilibrium_reaction_energy": "equilibrium_reaction_energy_per_atom",
}


#: How page requests and the heartbeat are retried. A module attribute so that a deployment
#: (or a test) can change it without a spec field.
RETRY_POLICY = RetryPolicy()


#: How the reader waits between attempts; replaced by tests that observe the waits.
sleep: Callable[[float], None] = time.sleep


#: Errors mp-api lets through from a request: its own, the transport's, a body that does not
#: parse (orjson's error is a ValueError), a JSON answer without the expected keys.
_REQUEST_ERRORS: tuple[type[BaseException], ...] = (requests.RequestException, ValueError, KeyError)

#: What a call of the client may raise that :meth:`_transient` judges.
_CALL_ERRORS: tuple[type[BaseException], ...] = (MPRestError, *_REQUEST_ERRORS)


def iter_mp(spec: MPSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read the summary documents a spec selects into structure records, page by page.

    Raises
    ------
    SourceError
        If the key's environment variable is unset, the server refuses the key or the query,
        or a page still fails after every retry; the message names the variable or URL and
        never the key.
    """
    api_key = _api_key(spec)
    endpoint = validate_endpoint(spec.endpoint)
    criteria = build_criteria(spec)
    fields = list(dict.fromkeys([*BASE_FIELDS, *spec.properties]))
    snapshot.location = endpoint
    snapshot.query.update(
        {"criteria": criteria, "fields": fields, "sort": SORT_FIELD, "chunk_size": spec.chunk_size}
    )
    client = SummaryClient(spec, endpoint, api_key)
    try:
        snapshot.database_version = client.database_version()
        store = page_store(spec, snapshot, endpoint, criteria, fields)
        seen: dict[str, int] = {}
        row = 0
        for documents in pages(client, store, criteria, fields, spec.chunk_size):
            for document in documents:
                row += 1
                snapshot.add_document(document)
                yield summary_record(spec, document, row, seen)
    finally:
        client.close()


#: Summary fields a read of reference phases asks for: what a convex hull needs, no structure.
REFERENCE_FIELDS = ("material_id", "formula_pretty", "formation_energy_per_atom")


#: Most chemical systems one reference query names; more are split over several queries.
#: A module attribute so that a deployment (or a test) can change it without a spec field.
CHEMSYS_PER_QUERY = 100


#: The source name reference reads go by in messages, snapshots and saved pages.
REFERENCE_SOURCE = "mp-references"


def read_reference_documents(
    spec: MPReferenceSpec, systems: Sequence[str], state_dir: Path | None = None
) -> tuple[list[dict[str, Any]], SourceSnapshot]:
    """Read the summary documents of some chemical systems: id, formula, formation energy.

    Parameters
    ----------
    spec
        Endpoint, API key variable and page size.
    systems
        Chemical systems as the API writes them (``Ba-O-Ti``), each asked for exactly; a
        system's sub-systems are only read if they are listed too.
    state_dir
        Folder where pages are saved (``<state_dir>/mp/<key>/``, keyed by the query and the
        database release), so that a killed read resumes and a re-read fetches nothing; None
        saves nothing.

    Returns
    -------
    tuple
        The documents in the order read (dicts with the :data:`REFERENCE_FIELDS` the server
        has), and the read's :class:`SourceSnapshot` (database release, query, sha256).

    Raises
    ------
    SourceError
        If the key's environment variable is unset, the server refuses the key or a query,
        or a page still fails after every retry; the message names the variable or URL and
        never the key.
    """
    source = MPSourceSpec(
        kind="mp",
        name=REFERENCE_SOURCE,
        endpoint=spec.endpoint,
        api_key_env=spec.api_key_env,
        chunk_size=spec.chunk_size,
        properties=["formation_energy_per_atom"],
        description="Materials Project phases of the candidates' chemical systems (hull)",
    )
    api_key = _api_key(source)
    endpoint = validate_endpoint(source.endpoint)
    fields = list(REFERENCE_FIELDS)
    systems = list(systems)
    snapshot = SnapshotBuilder(source, endpoint, state_dir=state_dir)
    snapshot.query.update(
        {
            "chemsys": systems,
            "deprecated": False,
            "fields": fields,
            "sort": SORT_FIELD,
            "chunk_size": source.chunk_size,
            "chemsys_per_query": CHEMSYS_PER_QUERY,
        }
    )
    documents: list[dict[str, Any]] = []
    client = SummaryClient(source, endpoint, api_key)
    try:
        snapshot.database_version = client.database_version()
        for start in range(0, len(systems), CHEMSYS_PER_QUERY):
            batch = systems[start : start + CHEMSYS_PER_QUERY]
            criteria = {"chemsys": ",".join(batch), "deprecated": False}
            store = page_store(source, snapshot, endpoint, criteria, fields)
            for page in pages(client, store, criteria, fields, source.chunk_size):
                for document in page:
                    snapshot.add_document(document)
                    documents.append(document)
    finally:
        client.close()
    snapshot.n_items = len(documents)
    return documents, snapshot.finish()


def build_criteria(spec: MPSourceSpec) -> dict[str, Any]:
    """Return the summary endpoint's query parameters for a spec (filters only, no paging).

    Raises
    ------
    SourceError
        If a material id is malformed or a range names no summary field.
    """
    criteria: dict[str, Any] = {}
    if spec.material_ids:
        try:
            criteria["material_ids"] = ",".join(validate_ids(list(spec.material_ids)))
        except MPRestError as exc:
            raise SourceError(f"source {spec.name}: bad material_ids: {exc}") from None
    for name in ("formula", "chemsys", "elements", "exclude_elements"):
        values = getattr(spec, name)
        if values:
            criteria[name] = ",".join(values)
    for name, bounds in sorted(spec.ranges.items()):
        field = RANGE_ALIASES.get(name, name)
        if field not in SummaryDoc.model_fields:
            raise SourceError(
                f"source {spec.name}: ranges.{name} is not a Materials Project summary field"
            )
        whole = _is_integer_field(field)
        if bounds.min is not None:
            criteria[f"{field}_min"] = math.ceil(bounds.min) if whole else bounds.min
        if bounds.max is not None:
            criteria[f"{field}_max"] = math.floor(bounds.max) if whole else bounds.max
    for name in ("is_stable", "is_metal"):
        value = getattr(spec, name)
        if value is not None:
            criteria[name] = value
    return criteria


def _is_integer_field(field: str) -> bool:
    """Whether a summary field holds whole numbers (``nsites``, ``nelements`` …).

    The API parses the bounds of such a field as integers and rejects ``4.0``, so the
    spec's float bounds are rounded inwards for them.
    """
    annotation = SummaryDoc.model_fields[field].annotation
    return int in typing.get_args(annotation) or annotation is int


def _api_key(spec: MPSourceSpec) -> str:
    api_key = os.environ.get(spec.api_key_env, "").strip()
    if not api_key:
        raise SourceError(
            f"source {spec.name}: environment variable {spec.api_key_env} is not set; "
            "it must hold a Materials Project API key"
        )
    try:
        validate_api_key(api_key)
    except MPRestError:
        raise SourceError(
            f"source {spec.name}: environment variable {spec.api_key_env} does not hold a "
            "Materials Project API key (mp-api expects 32 characters)"
        ) from None
    return api_key


class SummaryClient:
    """Heartbeat and summary pages from one endpoint, with retries and secret-free errors.

    MPRester is built on first use (not at all when every page is saved) with a session that
    does not retry, and whose response hook keeps the status and headers of the last answer:
    mp-api reports a failed request only as an ``MPRestError`` text, while choosing between
    retrying, waiting for ``Retry-After`` and giving up needs the status itself.
    """

    def __init__(self, spec: MPSourceSpec, endpoint: str, api_key: str) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self._api_key = api_key
        self._rester: Any = None
        self._session: requests.Session | None = None
        self._last: tuple[int, Mapping[str, str]] | None = None

    def close(self) -> None:
        """Close the HTTP session, if one was opened."""
        if self._session is not None:
            self._session.close()

    def database_version(self) -> str:
        """The database release the endpoint's heartbeat reports ('' if it reports none).

        Asked at every read rather than taken from MPRester, which keeps the first answer for
        an endpoint for the life of the process and would miss a release made meanwhile.
        """
        with JsonClient(self.spec.name, policy=RETRY_POLICY, sleep=sleep) as http:
            beat = http.get_json(self.endpoint + "heartbeat")
        if not isinstance(beat, dict):
            raise SourceError(
                f"source {self.spec.name}: {self.endpoint}heartbeat is not a JSON object"
            )
        return str(beat.get("db_version") or "")

    def fetch_page(
        self, criteria: dict[str, Any], fields: list[str], skip: int, limit: int
    ) -> dict[str, Any]:
        """Fetch ``limit`` documents from offset ``skip``: ``{documents, total_doc}``.

        Raises
        ------
        SourceError
            On a permanent error, or when every attempt failed.
        """
        where = f"{self.endpoint}materials/summary/ (documents {skip + 1}-{skip + limit})"
        query = {**criteria, "_sort_fields": SORT_FIELD, "_skip": skip, "_limit": limit}

        # _submit_requests sends one request of MPRester.search's paging loop: search() cannot
        # start at an offset and drops meta.total_doc, which tells when the last page is read;
        # and the _query_resource step between them checks every field name against a JSON
        # schema that pydantic rebuilds for each name (~70 ms each, every page). The fields
        # asked for are summary fields by construction (the spec validates its properties).
        def request() -> Any:
            summary = self._summary()
            return summary._submit_requests(
                url=summary.endpoint,
                criteria={**query, "_fields": ",".join(fields)},
                use_document_model=False,
                chunk_size=limit,
                num_chunks=1,
            )

        answer = self._retrying(where, request)
        documents = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(documents, list):
            raise SourceError(f"source {self.spec.name}: {where} answered without a data list")
        if len(documents) > limit:
            # mp-api splits a query the server finds too long (HTTP 414/422) into batches and
            # joins them, which does not combine with paging.
            raise SourceError(
                f"source {self.spec.name}: {where} gave {len(documents)} documents for a page of "
                f"{limit}; the query was split by mp-api, give fewer material_ids per source"
            )
        total = (answer.get("meta") or {}).get("total_doc")
        return {
            "skip": skip,
            "limit": limit,
            "total_doc": total if isinstance(total, int) else None,
            "documents": documents,
        }

    def _summary(self) -> Any:
        if self._rester is None:
            session = requests.Session()
            session.headers.update(
                {
                    "x-api-key": self._api_key,
                    "user-agent": f"matscreen (mp-api/{version('mp-api')})",
                }
            )
            session.hooks["response"].append(self._remember)
            self._session = session
            self._rester = MPRester(
                api_key=self._api_key,
                endpoint=self.endpoint,
                session=session,
                use_document_model=False,
                mute_progress_bars=True,
            )
        return self._rester.materials.summary

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last = (response.status_code, response.headers)

    def _retrying(self, where: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            self._last = None
            try:
                return call()
            except _CALL_ERRORS as exc:
                retry_after, problem = self._transient(exc, where)
                raise Transient(problem, retry_after) from exc

        return with_retries(self.spec.name, where, attempt, RETRY_POLICY, sleep)

    def _transient(self, exc: BaseException, where: str) -> tuple[float | None, str]:
        """Return (Retry-After seconds, description) of a transient failure; raise otherwise."""
        name = self.spec.name
        cause = exc if isinstance(exc, requests.RequestException) else exc.__context__
        if isinstance(cause, requests.RequestException):
            return None, f"{type(cause).__name__}: {self._scrub(str(cause))}"
        status, headers = self._last if self._last is not None else (None, {})
        if status in (401, 403):
            raise SourceError(
                f"source {name}: the Materials Project at {self.endpoint} refused the API key "
                f"from {self.spec.api_key_env} (HTTP {status})"
            ) from None
        if is_transient(status):
            return retry_after_seconds(headers.get("Retry-After")), f"HTTP {status}"
        if status == 200 and isinstance(exc, ValueError):
            return None, f"invalid JSON body ({self._scrub(str(exc))})"
        answered = f" answered HTTP {status}" if status is not None else " failed"
        raise SourceError(f"source {name}: {where}{answered}: {self._scrub(str(exc))}") from None

    def _scrub(self, text: str) -> str:
        """``text`` with the API key blanked, should a server echo it back."""
        return text.replace(self._api_key, "[API key]")
