"""A loopback stand-in for the part of the Materials Project API that mp-api's MPRester uses.

It answers two routes, as ``api.materialsproject.org`` does:

- ``GET /heartbeat`` (no key needed): ``db_version``, the emmet ``version`` of the server and
  the access-controlled batch ids, which MPRester reads when it starts;
- ``GET /materials/summary/`` (``X-API-KEY`` header required, else HTTP 401 with a JSON
  ``detail``): the served documents filtered by ``material_ids``, ``formula``, ``chemsys``,
  ``elements``, ``exclude_elements``, ``<field>_min`` / ``<field>_max``, ``is_stable``,
  ``is_metal``, ``is_gap_direct`` and ``deprecated``; sorted by ``_sort_fields``; paged by
  ``_skip`` / ``_limit``; projected on ``_fields``; as ``{"data": [...], "meta": {...}}`` with
  ``meta.total_doc``. Elements, chemical system, reduced formula, ``nsites`` and
  ``nelements`` are computed from each document's structure, so documents recorded without
  those fields can still be searched by them. A parameter it does not implement is answered
  with HTTP 400, so a client sending something unexpected is noticed.

Faults for the next summary requests are queued in :attr:`MPServer.faults` (HTTP status with
headers such as ``Retry-After``, a 200 answer whose JSON body is cut short, a connection
closed in the middle of the body); :meth:`MPServer.fail_from_page` makes every request for a
page at or after a given one fail until healed. Every request is logged in
:attr:`MPServer.requests`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pymatgen.core import Composition, Structure

#: Key mp-api adds to documents it hands back, listing the fields a query did not ask for;
#: files saved from mp-api results carry it, the API's answers never do.
CLIENT_ONLY_KEYS = ("fields_not_requested",)

#: Flags the summary endpoint filters on with a true/false parameter.
FLAG_PARAMETERS = ("is_stable", "is_metal", "is_gap_direct", "deprecated")

#: Parameters that list values separated by commas.
LIST_PARAMETERS = ("material_ids", "formula", "chemsys", "elements", "exclude_elements")

#: Summary fields holding whole numbers: their range bounds must be integers.
INTEGER_FIELDS = ("nsites", "nelements", "num_magnetic_sites", "num_unique_magnetic_sites")

#: Paging, sorting and projection parameters understood by the server.
CONTROL_PARAMETERS = ("_fields", "_skip", "_limit", "_sort_fields", "_all_fields")


def load_summary_documents(path: Path) -> list[dict[str, Any]]:
    """Read saved summary documents (one JSON object a line) as the API would serve them."""
    documents = []
    with open(path) as handle:
        for line in handle:
            if line.strip():
                document = json.loads(line)
                for key in CLIENT_ONLY_KEYS:
                    document.pop(key, None)
                documents.append(document)
    return documents


@dataclass(frozen=True)
class Fault:
    """One failure to answer a summary request with.

    ``kind`` is ``status`` (answer ``status`` with ``headers`` and a JSON ``detail``),
    ``truncated`` (answer 200 with only the first half of the JSON body, its length declared
    honestly) or ``disconnect`` (declare the whole body's length, send half, close).
    """

    kind: Literal["status", "truncated", "disconnect"] = "status"
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server received: path, query parameters and the status answered."""

    path: str
    params: dict[str, str]
    status: int


@dataclass
class _Indexed:
    """A served document with the values computed from its structure."""

    document: dict[str, Any]
    derived: dict[str, Any]

    def value(self, name: str) -> Any:
        return self.document[name] if name in self.document else self.derived.get(name)


def _index(document: dict[str, Any]) -> _Indexed:
    try:
        structure = Structure.from_dict(document["structure"])
    # a document whose structure pymatgen cannot build is served as it is, and matches no
    # filter on computed values
    except Exception:
        return _Indexed(document, {})
    composition = structure.composition
    elements = sorted(element.symbol for element in composition.elements)
    return _Indexed(
        document,
        {
            "elements": elements,
            "nelements": len(elements),
            "chemsys": "-".join(elements),
            "nsites": len(structure),
            "volume": structure.volume,
            "density": float(structure.density),
            "reduced_formula": composition.reduced_formula,
        },
    )


class BadQuery(ValueError):
    """A summary query the server does not understand (HTTP 400, or 422 for a bad value)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.status = status


def _parse_flag(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise BadQuery(f"{name} must be true or false, not {text!r}")


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadQuery(f"{name} must be an integer, not {text!r}") from None


class MPServer:
    """The server's documents, key, database version, queued faults and request log."""

    def __init__(self, documents: Iterable[dict[str, Any]], api_key: str, db_version: str):
        self.api_key = api_key
        self.db_version = db_version
        self.documents = [_index(document) for document in documents]
        self.faults: list[Fault] = []
        self.requests: list[LoggedRequest] = []
        self._failing_page: tuple[int, Fault] | None = None
        self._lock = threading.Lock()

    def fail_from_page(self, page: int | None, fault: Fault | None = None) -> None:
        """Fail every summary request for page ``page`` (0-based) or later; None heals."""
        with self._lock:
            self._failing_page = None if page is None else (page, fault or Fault(status=503))

    def summary_requests(self) -> list[LoggedRequest]:
        """The logged requests to the summary endpoint, in order."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/") == "/materials/summary"]

    def _log(self, path: str, params: dict[str, str], status: int) -> None:
        with self._lock:
            self.requests.append(LoggedRequest(path, params, status))

    def _next_fault(self, params: dict[str, str]) -> Fault | None:
        with self._lock:
            if self.faults:
                return self.faults.pop(0)
            if self._failing_page is not None:
                first, fault = self._failing_page
                limit = int(params.get("_limit") or 0)
                page = int(params.get("_skip") or 0) // limit if limit > 0 else 0
                if page >= first:
                    return fault
        return None

    def heartbeat(self) -> dict[str, Any]:
        return {
            "db_version": self.db_version,
            "version": version("emmet-core"),
            "access_controlled_batch_ids": [],
        }

    def search(self, params: dict[str, str]) -> dict[str, Any]:
        """Answer one summary query.

        Raises
        ------
        BadQuery
            If a parameter is unknown or malformed.
        """
        matches = [doc for doc in self.documents if self._matches(doc, params)]
        for name in reversed([n for n in params.get("_sort_fields", "").split(",") if n]):
            descending = name.startswith("-")
            key = name.lstrip("-")
            # documents lacking the field keep their order (the sort is stable)
            present = [doc for doc in matches if doc.value(key) is not None]
            absent = [doc for doc in matches if doc.value(key) is None]
            present.sort(key=lambda doc, key=key: doc.value(key), reverse=descending)
            matches = present + absent
        skip = _parse_int("_skip", params.get("_skip", "0"))
        limit = _parse_int("_limit", params.get("_limit", "100"))
        if skip < 0 or limit < 0:
            raise BadQuery("_skip and _limit must not be negative")
        fields = [name for name in params.get("_fields", "").split(",") if name]
        page = matches[skip : skip + limit]
        if fields:
            data = [
                {name: doc.value(name) for name in fields if doc.value(name) is not None}
                for doc in page
            ]
        else:
            data = [doc.document for doc in page]
        return {
            "data": data,
            "meta": {
                "api_version": version("emmet-core"),
                "time_stamp": datetime.now(UTC).isoformat(),
                "total_doc": len(matches),
                "max_limit": 1000,
            },
        }

    def _matches(self, doc: _Indexed, params: dict[str, str]) -> bool:
        for name, text in params.items():
            if name in CONTROL_PARAMETERS:
                continue
            values = [value.strip() for value in text.split(",") if value.strip()]
            if name == "material_ids":
                if doc.document.get("material_id") not in values:
                    return False
            elif name == "formula":
                try:
                    wanted = {Composition(value).reduced_formula for value in values}
                except ValueError:
                    raise BadQuery(f"formula: cannot read {text!r}") from None
                if doc.derived.get("reduced_formula") not in wanted:
                    return False
            elif name == "chemsys":
                wanted = {"-".join(sorted(value.split("-"))) for value in values}
                if doc.derived.get("chemsys") not in wanted:
                    return False
            elif name == "elements":
                if not set(values) <= set(doc.derived.get("elements", ())):
                    return False
            elif name == "exclude_elements":
                if set(values) & set(doc.derived.get("elements", ())):
                    return False
            elif name in FLAG_PARAMETERS:
                value = doc.value(name)
                if name == "deprecated" and value is None:
                    value = False
                if value is None or bool(value) != _parse_flag(name, text):
                    return False
            elif name.endswith(("_min", "_max")):
                bound = self._bound(name, text)
                value = doc.value(name[:-4])
                if not isinstance(value, int | float) or isinstance(value, bool):
                    return False
                if (name.endswith("_min") and value < bound) or (
                    name.endswith("_max") and value > bound
                ):
                    return False
            else:
                raise BadQuery(f"unsupported query parameter {name!r}")
        return True

    @staticmethod
    def _bound(name: str, text: str) -> float:
        """Parse a range bound; whole-number fields take integers only, as the API does."""
        if name[:-4] in INTEGER_FIELDS:
            try:
                return int(text)
            except ValueError:
                raise BadQuery(f"{name}: value is not a valid integer", status=422) from None
        try:
            return float(text)
        except ValueError:
            raise BadQuery(f"{name}: value is not a valid number", status=422) from None


def _handler(server: MPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output quiet."""

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _send_json(self, status: int, value: Any, headers: dict[str, str] | None = None):
            self._send(status, json.dumps(value).encode("utf-8"), headers)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            path = parts.path
            if path.rstrip("/") == "/heartbeat":
                server._log(path, params, 200)
                self._send_json(200, server.heartbeat())
                return
            if path.rstrip("/") != "/materials/summary":
                server._log(path, params, 404)
                self._send_json(404, {"detail": "Not Found"})
                return
            if self.headers.get("X-API-KEY") != server.api_key:
                server._log(path, params, 401)
                self._send_json(401, {"detail": "Invalid or missing API key."})
                return
            fault = server._next_fault(params)
            if fault is not None and fault.kind == "status":
                server._log(path, params, fault.status)
                self._send_json(fault.status, {"detail": "injected failure"}, fault.headers)
                return
            try:
                answer = server.search(params)
            except BadQuery as exc:
                server._log(path, params, exc.status)
                self._send_json(exc.status, {"detail": str(exc)})
                return
            body = json.dumps(answer).encode("utf-8")
            server._log(path, params, 200)
            if fault is None:
                self._send(200, body)
            elif fault.kind == "truncated":
                self._send(200, body[: len(body) // 2])
            else:  # disconnect: promise the whole body, send half of it and hang up
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True

    return Handler


@contextmanager
def mp_server(
    documents: Iterable[dict[str, Any]], api_key: str, db_version: str = "2025.06.09"
) -> Iterator[tuple[str, MPServer]]:
    """Serve ``documents`` on 127.0.0.1 (a free port) until the block ends.

    Yields the base URL (ending in ``/``) and the :class:`MPServer`, whose faults and request
    log the caller may use.
    """
    state = MPServer(documents, api_key, db_version)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    # a short poll interval lets shutdown() return at once instead of after up to 0.5 s
    thread = threading.Thread(
        target=httpd.serve_forever, args=(0.05,), name="mp-test-server", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
