"""A loopback AFLUX server for the tests: real aflowlib entries, or recorded AFLUX pages.

:class:`AfluxServer` speaks the part of AFLUX (Rose et al., Comput. Mater. Sci. 137, 362
(2017)) that the client uses. The summons is the URL's whole query string, a comma-separated
list of terms:

* matchbook keywords, bare (``aurl``: return it) or with a filter (``species(O,Sr)``,
  ``Egap(1*,*3)``, ``nspecies(2)``, ``catalog(ICSD)``). Inside a filter ``,`` is AND,
  ``:`` is OR, ``!`` is NOT, parentheses group, ``a*`` means at least ``a``, ``*b`` at most
  ``b`` and ``*`` alone "has a value". A list-valued keyword (``species``) matches when one
  of its items does. An entry without the filtered keyword does not match. A ``$`` before a
  keyword filters without returning it. The result is sorted by the first keyword;
* directives ``paging(n,k)`` (page ``n`` of ``k`` entries; ``k`` defaults to 64, ``n = 0``
  returns everything, a negative ``n`` reverses the order) and ``format(json)``.

It answers ``{"i of N": {keyword: value, …}, …}`` with the requested keywords of each entry.
In replay mode it answers page ``n`` with the ``n``-th recorded page, verbatim, and an empty
object past the last one. :meth:`AfluxServer.fail_next` queues error answers (with an
optional ``Retry-After``) and :attr:`AfluxServer.requests` logs every request.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from matscreen.tasks.sources.aflowlib import parse_aflowlib_out

#: The path the server answers on, as aflow.org does.
API_PATH = "/API/aflux/"

#: AFLUX's page size when ``paging`` names none.
DEFAULT_PAGE_SIZE = 64

_TERM = re.compile(r"(\$?)([A-Za-z_][A-Za-z0-9_]*)(?:\((.*)\))?", re.DOTALL)
_DIRECTIVES = frozenset({"paging", "format"})


class SummonsError(ValueError):
    """The summons is not one this server understands (answered with HTTP 400)."""


def load_example_entries(folder: Path) -> list[dict[str, Any]]:
    """Return the aflowlib entries of a folder's ``*_example.json`` and ``*_example.out`` files.

    Every ``.json`` entry, then every ``.out`` entry whose auid no ``.json`` file holds (an
    aflowlib.out file repeating a .json entry is skipped), each file in name order.
    """
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*_example.json")):
        entries.append(json.loads(path.read_text()))
    known = {entry["auid"] for entry in entries}
    for path in sorted(folder.glob("*_example.out")):
        entry = parse_aflowlib_out(path.read_text(), path.name)
        if entry["auid"] not in known:
            known.add(entry["auid"])
            entries.append(entry)
    return entries


# --- the summons --------------------------------------------------------------------------


def split_top_level(text: str, separator: str) -> list[str]:
    """Split ``text`` at ``separator`` characters outside parentheses and quotes."""
    parts, depth, quoted, start = [], 0, False, 0
    for position, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise SummonsError(f"unbalanced ')' in {text!r}")
        elif char == separator and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    if depth or quoted:
        raise SummonsError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append(text[start:])
    return parts


Predicate = Callable[[Any], bool]


def _atom_predicate(token: str) -> Predicate:
    """Whether one value (a number or text) matches one filter token."""
    token = token.strip()
    if not token:
        raise SummonsError("empty filter value")
    if token == "*":
        return lambda value: value is not None
    text = token.strip("'")
    try:
        if token.endswith("*"):
            low = float(token[:-1])
            return lambda value: _as_float(value) is not None and _as_float(value) >= low
        if token.startswith("*"):
            high = float(token[1:])
            return lambda value: _as_float(value) is not None and _as_float(value) <= high
        exact = float(token)
        return lambda value: _as_float(value) == exact
    except ValueError:
        pass
    pattern = text.lower()
    return lambda value: isinstance(value, str) and fnmatch.fnmatchcase(value.lower(), pattern)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_filter(argument: str) -> Predicate:
    """Compile a keyword's filter (``O,Sr``, ``(Cr:Mn),!O``, ``1*,*3``) into a predicate.

    A predicate takes the entry's value of the keyword; on a list it asks whether any item
    matches each token, so ``species(O,Sr)`` holds for an entry whose species include both.
    """
    and_parts = split_top_level(argument, ",")
    if len(and_parts) > 1:
        if any(len(split_top_level(part, ":")) > 1 for part in and_parts):
            raise SummonsError(f"mixing ',' and ':' needs parentheses: {argument!r}")
        predicates = [parse_filter(part) for part in and_parts]
        return lambda value: all(predicate(value) for predicate in predicates)
    or_parts = split_top_level(argument, ":")
    if len(or_parts) > 1:
        predicates = [parse_filter(part) for part in or_parts]
        return lambda value: any(predicate(value) for predicate in predicates)
    term = argument.strip()
    if term.startswith("!"):
        inner = parse_filter(term[1:])
        return lambda value: value is not None and not inner(value)
    if term.startswith("(") and term.endswith(")"):
        return parse_filter(term[1:-1])
    atom = _atom_predicate(term)

    def matches(value: Any) -> bool:
        if isinstance(value, list):
            return any(atom(item) for item in value)
        return atom(value)

    return matches


@dataclass
class Summons:
    """A parsed summons: the keywords in order, their filters, the paging and the format."""

    keywords: list[str]
    returned: list[str]
    filters: dict[str, Predicate]
    page: int
    page_size: int
    format: str


def parse_summons(text: str) -> Summons:
    """Parse a summons (the URL's query string, unescaped).

    Raises
    ------
    SummonsError
        If a term is not ``keyword`` or ``keyword(arguments)``, paging is not whole numbers,
        or the format is not json.
    """
    keywords: list[str] = []
    returned: list[str] = []
    filters: dict[str, Predicate] = {}
    page, size, form = 1, DEFAULT_PAGE_SIZE, "json"
    for term in split_top_level(text, ","):
        match = _TERM.fullmatch(term.strip())
        if match is None:
            raise SummonsError(f"cannot read the term {term!r}")
        muted, keyword, argument = match.groups()
        if keyword == "paging":
            values = split_top_level(argument or "", ",")
            try:
                page = int(values[0])
                size = int(values[1]) if len(values) > 1 else DEFAULT_PAGE_SIZE
            except ValueError as exc:
                raise SummonsError(f"paging needs whole numbers, not {argument!r}") from exc
            if size < 1:
                raise SummonsError(f"page size must be positive, not {size}")
        elif keyword == "format":
            form = (argument or "").strip("'").lower()
            if form != "json":
                raise SummonsError(f"this server only answers format(json), not {form!r}")
        else:
            if keyword in keywords:
                raise SummonsError(f"keyword {keyword!r} named twice")
            keywords.append(keyword)
            if not muted:
                returned.append(keyword)
            if argument is not None:
                filters[keyword] = parse_filter(argument)
    return Summons(keywords, returned, filters, page, size, form)


def _sort_key(value: Any) -> tuple[int, Any]:
    number = _as_float(value)
    if number is not None:
        return (0, number)
    if value is None:
        return (2, "")
    return (1, str(value))


def answer(entries: Sequence[dict[str, Any]], summons: Summons) -> dict[str, dict[str, Any]]:
    """The AFLUX page a summons asks of ``entries``: ``{"i of N": {keyword: value}}``."""
    matched = [
        entry
        for entry in entries
        if all(
            entry.get(keyword) is not None and predicate(entry[keyword])
            for keyword, predicate in summons.filters.items()
        )
    ]
    if summons.keywords:
        first = summons.keywords[0]
        matched.sort(key=lambda entry: _sort_key(entry.get(first)), reverse=summons.page < 0)
    total = len(matched)
    if summons.page == 0:
        start, stop = 0, total
    else:
        start = (abs(summons.page) - 1) * summons.page_size
        stop = start + summons.page_size
    return {
        f"{index} of {total}": {
            keyword: entry[keyword] for keyword in summons.returned if keyword in entry
        }
        for index, entry in enumerate(matched[start:stop], start=start + 1)
    }


# --- the HTTP server --------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server received: the unescaped summons and the status answered."""

    path: str
    summons: str
    status: int


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: str | None


class AfluxServer:
    """An AFLUX server on 127.0.0.1 and a free port, run in a thread while in a ``with`` block.

    Parameters
    ----------
    entries
        aflowlib entries (JSON dicts) to search.
    replay_pages
        Recorded AFLUX pages; when given, page ``n`` of any summons is answered with
        ``replay_pages[n - 1]`` (the page size asked must be the recorded one).

    Examples
    --------
    >>> with AfluxServer(entries) as server:           # doctest: +SKIP
    ...     httpx.get(server.url + "?species(O),paging(1,2)")
    """

    def __init__(
        self,
        entries: Iterable[dict[str, Any]] = (),
        replay_pages: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        self.entries = list(entries)
        self.replay_pages = list(replay_pages) if replay_pages is not None else None
        self.requests: list[LoggedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``, if given)."""
        with self._lock:
            self._faults.extend([_Fault(status, retry_after)] * times)

    @property
    def summonses(self) -> list[str]:
        """The summons of every request answered with HTTP 200, in order."""
        return [request.summons for request in self.requests if request.status == 200]

    def __enter__(self) -> AfluxServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (name fixed by BaseHTTPRequestHandler)
                status, body, headers = server._respond(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request log replaces the console log

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}{API_PATH}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _respond(self, raw_path: str) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        summons_text = unquote(parts.query)
        status, body, headers = self._answer(parts.path, summons_text)
        with self._lock:
            self.requests.append(LoggedRequest(parts.path, summons_text, status))
        return status, body, headers

    def _answer(self, path: str, summons_text: str) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return fault.status, {"error": f"injected HTTP {fault.status}"}, headers
        if path.rstrip("/") != API_PATH.rstrip("/"):
            return 404, {"error": f"no AFLUX endpoint at {path}"}, {}
        try:
            summons = parse_summons(summons_text)
        except SummonsError as exc:
            return 400, {"error": str(exc)}, {}
        if self.replay_pages is None:
            return 200, answer(self.entries, summons), {}
        recorded_size = len(self.replay_pages[0])
        if summons.page_size != recorded_size:
            return (
                400,
                {
                    "error": f"the recorded pages hold {recorded_size} entries, not "
                    f"{summons.page_size}"
                },
                {},
            )
        if 1 <= summons.page <= len(self.replay_pages):
            return 200, self.replay_pages[summons.page - 1], {}
        return 200, {}, {}
