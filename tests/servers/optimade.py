"""Local OPTIMADE servers for the tests: the reference implementation, and a replay server.

:func:`reference_server` runs the ``optimade`` package's own server (FastAPI on uvicorn, with
the in-memory mongomock backend) in a child process, loaded with structure documents that
:func:`oqmd_document` and :func:`alexandria_document` build from real OQMD and Alexandria
records. The child process is needed for two reasons: mongomock keeps its data in the memory of
the process that inserted it, so the server must load the documents itself (the reference
server does this at start-up from a JSON-lines file named in its configuration); and the
server's modules read their configuration and set up logging when imported, which must not
leak into the test process.

:func:`replay_server` is a small standard-library server that replays recorded provider
responses: ``/v1/structures`` answers with recorded pages chained by ``links.next`` (rewritten
to stay on loopback), ``/v1/info`` with an info document; it can answer HTTP 500 to the first
requests to exercise the client's retries.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from pymatgen.core import Lattice, Structure

#: Provider fields each database's documents carry: OPTIMADE name -> key of the source record.
OQMD_FIELDS = {
    "_oqmd_band_gap": "band_gap",
    "_oqmd_delta_e": "delta_e",
    "_oqmd_stability": "stability",
}
ALEXANDRIA_FIELDS = {
    "_alexandria_band_gap": "band_gap_ind",
    "_alexandria_e_form": "e_form",
    "_alexandria_e_above_hull": "e_above_hull",
}

#: The provider the reference server describes in ``/v1/info`` and ``meta.provider``.
PROVIDER = {
    "prefix": "msdev",
    "name": "matscreen test provider",
    "description": "OQMD and Alexandria records served by the OPTIMADE reference server",
    "homepage": "https://example.org",
}


# --- OQMD / Alexandria records -> OPTIMADE structure documents --------------------------------


def oqmd_structure(row: dict[str, Any]) -> Structure:
    """Build the structure of an OQMD REST record from its cell and ``"El @ fx fy fz"`` sites."""
    species, coords = [], []
    for site in row["sites"]:
        element, _, position = site.partition("@")
        species.append(element.strip())
        coords.append([float(value) for value in position.split()])
    return Structure(Lattice(row["cell"]), species, coords)


def alexandria_structure(row: dict[str, Any]) -> Structure:
    """Build the structure of an Alexandria entry from its pymatgen structure dict."""
    return Structure.from_dict(row["structure"])


def anonymous_labels() -> Iterator[str]:
    """Yield OPTIMADE's anonymous element labels in order: A … Z, Aa … Az, Ba … Zz."""
    capitals = [chr(code) for code in range(ord("A"), ord("Z") + 1)]
    yield from capitals
    for first in capitals:
        for second in capitals:
            yield first + second.lower()


def formula(counts: Iterable[tuple[str, int]]) -> str:
    """Write symbol/count pairs as a formula, leaving out counts of one."""
    return "".join(f"{symbol}{count if count != 1 else ''}" for symbol, count in counts)


def structure_attributes(structure: Structure, last_modified: str) -> dict[str, Any]:
    """Return the OPTIMADE ``structures`` attributes of an ordered, periodic structure.

    Parameters
    ----------
    structure
        A structure with one element per site.
    last_modified
        ISO 8601 time stamp given as the entry's ``last_modified``.
    """
    cell_counts = {el.symbol: int(round(n)) for el, n in structure.composition.items()}
    elements = sorted(cell_counts)
    divisor = math.gcd(*cell_counts.values())
    reduced = {symbol: count // divisor for symbol, count in cell_counts.items()}
    by_count = sorted(reduced.values(), reverse=True)
    species_at_sites = [site.specie.symbol for site in structure]
    return {
        "lattice_vectors": structure.lattice.matrix.tolist(),
        "cartesian_site_positions": structure.cart_coords.tolist(),
        "species": [
            {"name": symbol, "chemical_symbols": [symbol], "concentration": [1.0]}
            for symbol in dict.fromkeys(species_at_sites)
        ],
        "species_at_sites": species_at_sites,
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [cell_counts[symbol] / len(structure) for symbol in elements],
        "chemical_formula_reduced": formula((symbol, reduced[symbol]) for symbol in elements),
        "chemical_formula_anonymous": formula(zip(anonymous_labels(), by_count, strict=False)),
        "chemical_formula_descriptive": formula(
            (symbol, cell_counts[symbol]) for symbol in elements
        ),
        "nsites": len(structure),
        "nperiodic_dimensions": 3,
        "dimension_types": [1, 1, 1],
        "structure_features": [],
        "last_modified": last_modified,
    }


def oqmd_document(row: dict[str, Any], last_modified: str) -> dict[str, Any]:
    """The OPTIMADE structure entry of one OQMD REST record, id ``oqmd-<entry_id>``."""
    attributes = structure_attributes(oqmd_structure(row), last_modified)
    attributes.update({field: row[key] for field, key in OQMD_FIELDS.items()})
    return {"id": f"oqmd-{row['entry_id']}", "type": "structures", "attributes": attributes}


def alexandria_document(row: dict[str, Any], last_modified: str) -> dict[str, Any]:
    """The OPTIMADE structure entry of one Alexandria entry, under its own ``agm…`` id."""
    attributes = structure_attributes(alexandria_structure(row), last_modified)
    targets = row["targets"]["regression"]
    attributes.update({field: targets[key] for field, key in ALEXANDRIA_FIELDS.items()})
    return {"id": row["entry_id"], "type": "structures", "attributes": attributes}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file into a list of objects."""
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def file_time(path: Path) -> str:
    """The modification time of ``path`` as an OPTIMADE time stamp (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime))


def optimade_documents(data_dir: Path) -> list[dict[str, Any]]:
    """The OQMD and Alexandria records of the shared data folder as OPTIMADE entries."""
    oqmd = data_dir / "optimade" / "oqmd_200.jsonl"
    alexandria = data_dir / "optimade" / "alexandria_98.jsonl"
    return [oqmd_document(row, file_time(oqmd)) for row in read_jsonl(oqmd)] + [
        alexandria_document(row, file_time(alexandria)) for row in read_jsonl(alexandria)
    ]


# --- the reference server -----------------------------------------------------------------------


def write_optimade_jsonl(path: Path, documents: Iterable[dict[str, Any]]) -> Path:
    """Write entries as an OPTIMADE JSON-lines file (``x-optimade`` header, then one per line)."""
    with open(path, "w") as handle:
        handle.write(json.dumps({"x-optimade": {"meta": {"api_version": "1.1.0"}}}) + "\n")
        for document in documents:
            handle.write(json.dumps(document) + "\n")
    return path


def listening_socket() -> socket.socket:
    """A loopback TCP socket already listening on a free port, to hand to the server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


@contextmanager
def reference_server(
    documents: Iterable[dict[str, Any]],
    workdir: Path,
    provider_fields: Iterable[str] = (*OQMD_FIELDS, *ALEXANDRIA_FIELDS),
    start_timeout_s: float = 30.0,
    listening: socket.socket | None = None,
) -> Iterator[str]:
    """Run the OPTIMADE reference server on loopback, serving ``documents``; yield its base URL.

    Parameters
    ----------
    documents
        OPTIMADE structure entries (``id``, ``type``, ``attributes``) to serve.
    workdir
        Folder for the server's configuration, data file and logs.
    provider_fields
        Provider-specific ``structures`` fields the server makes queryable.
    start_timeout_s
        How long to wait for the server to answer before giving up.
    listening
        A socket from :func:`listening_socket` to serve on, which stays open afterwards: a
        server started later on the same socket answers at the same base URL, as a provider
        does after updating its database. By default the server gets a socket of its own.

    Raises
    ------
    RuntimeError
        If the server exits or does not answer within ``start_timeout_s``; the message holds the
        end of its log.
    """
    data = write_optimade_jsonl(workdir / "structures.jsonl", documents)
    config = workdir / "optimade_config.json"
    config.write_text(
        json.dumps(
            {
                "database_backend": "mongomock",
                "insert_test_data": False,
                "insert_from_jsonl": str(data),
                "provider": PROVIDER,
                "provider_fields": {"structures": list(provider_fields)},
                "log_dir": str(workdir / "logs"),
                "page_limit_max": 500,
            }
        )
    )
    # The server reads OPTIMADE_* variables before its configuration file: keep only ours.
    env = {
        key: value for key, value in os.environ.items() if not key.upper().startswith("OPTIMADE_")
    }
    env["OPTIMADE_CONFIG_FILE"] = str(config)
    log_path = workdir / "server.log"
    # The listening socket is passed to uvicorn by descriptor, so no other process can take the
    # port between choosing it and the server binding it; the child keeps its own copy.
    owned = nullcontext(listening) if listening is not None else listening_socket()
    with owned as sock, open(log_path, "wb") as log:
        host, port = sock.getsockname()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "optimade.server.main:app",
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    base_url = f"http://{host}:{port}"
    try:
        _wait_until_serving(process, f"{base_url}/v1/info", log_path, start_timeout_s)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(
    process: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"OPTIMADE server exited with code {process.returncode}:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"OPTIMADE server did not answer {url}:\n{_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path, n_chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-n_chars:]


# --- the replay server --------------------------------------------------------------------------


class _ReplayHandler(BaseHTTPRequestHandler):
    server: ReplayServer

    def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
        self.server.requests.append(self.path)
        path, _, query = self.path.partition("?")
        path = path.rstrip("/")
        if self.server.failures_left > 0:
            self.server.failures_left -= 1
            # Retry-After 0 lets the client retry at once, keeping the test fast.
            self._send(500, {"errors": [{"status": "500", "title": "Internal Server Error"}]}, "0")
        elif path == "/v1/info":
            self._send(200, self.server.info)
        elif path == "/v1/structures":
            number = parse_qs(query).get("replay_page", ["0"])[0]
            self._send(200, self.server.page(int(number)))
        else:
            self._send(404, {"errors": [{"status": "404", "detail": f"no {path}"}]})

    def _send(self, status: int, body: Any, retry_after: str | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(payload)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Keep the test output quiet."""


class ReplayServer(ThreadingHTTPServer):
    """Serves recorded ``structures`` pages on loopback (see :func:`replay_server`).

    Attributes
    ----------
    base_url
        The server's address, ``http://127.0.0.1:<port>``.
    requests
        Every path (with query string) asked, in order.
    """

    daemon_threads = True

    def __init__(self, pages: list[Any], info: Any, fail_first: int, next_as_object: bool) -> None:
        super().__init__(("127.0.0.1", 0), _ReplayHandler)
        host, port = self.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self.pages = pages
        self.info = info
        self.failures_left = fail_first
        self.next_as_object = next_as_object
        self.requests: list[str] = []

    def page(self, number: int) -> Any:
        """Page ``number``, its ``links.next`` pointing at the following page on this server.

        A recorded next link points to the provider that was recorded; it is replaced so that
        the client stays on loopback (and null on the last page).
        """
        page = copy.deepcopy(self.pages[number])
        if isinstance(page, dict) and isinstance(page.get("links"), dict):
            link: Any = None
            if number + 1 < len(self.pages):
                link = f"{self.base_url}/v1/structures?replay_page={number + 1}"
                if self.next_as_object:
                    link = {"href": link, "meta": {"page": number + 1}}
            page["links"]["next"] = link
        return page


def info_from_meta(response: dict[str, Any]) -> dict[str, Any]:
    """An ``/v1/info`` document consistent with a recorded ``structures`` response's meta."""
    meta = response["meta"]
    return {
        "data": {
            "id": "/",
            "type": "info",
            "attributes": {
                "api_version": meta["api_version"],
                "available_api_versions": [],
                "formats": ["json"],
                "entry_types_by_format": {"json": ["structures"]},
                "available_endpoints": ["info", "structures"],
                "is_index": False,
            },
        },
        "meta": meta,
    }


def split_pages(response: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """Split a recorded ``structures`` response into pages of ``size`` entries, same meta."""
    return [
        {**response, "data": response["data"][start : start + size]}
        for start in range(0, len(response["data"]), size)
    ]


@contextmanager
def replay_server(
    pages: list[Any], info: Any, fail_first: int = 0, next_as_object: bool = False
) -> Iterator[ReplayServer]:
    """Serve recorded ``structures`` pages on loopback; yield the running server.

    Parameters
    ----------
    pages
        Bodies of ``/v1/structures``: the first for a plain request, page ``i`` for
        ``?replay_page=i`` — the link each page's ``links.next`` is rewritten to.
    info
        Body of ``/v1/info``.
    fail_first
        How many requests, whatever their path, are answered with HTTP 500 first.
    next_as_object
        Give ``links.next`` as a link object (``{"href": …}``) rather than a string.
    """
    server = ReplayServer(pages, info, fail_first, next_as_object)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
