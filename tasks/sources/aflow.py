"""AFLOW: aflowlib entries (``aflowlib.json`` / ``aflowlib.out``) and the AFLUX search API.

An aflowlib entry describes one relaxed calculation with about 140 keywords. The structure is
rebuilt from three of them:

``geometry``
    the relaxed cell as ``a, b, c, alpha, beta, gamma`` (Å, degrees);
``positions_fractional``
    one fractional ``x, y, z`` per atom;
``species`` and ``composition``
    the elements in alphabetical order and the number of atoms of each. AFLOW writes the
    atoms grouped by element in that same order, so ``species[i]`` repeated
    ``composition[i]`` times gives the element of every position. (``stoichiometry`` holds
    only rounded fractions; ``compound``, e.g. ``Ac2Br6``, holds the same counts as text and is
    used when ``composition`` is absent, and checked against it otherwise.)

``Egap`` becomes ``band_gap`` (eV) and ``enthalpy_formation_atom`` becomes
``formation_energy_per_atom`` (eV/atom).

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
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.sources.entry_cache import EntryCache, Listed
from matscreen.tasks.sources.http import JsonClient
from matscreen.tasks.sources.properties import as_number
from matscreen.tasks.spec import AFLOW_PROPERTIES, AflowSourceSpec

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

#: Entry keywords kept in a record's ``extra`` when the entry has them.
EXTRA_KEYWORDS: tuple[str, ...] = (
    "auid",
    "aurl",
    "compound",
    "catalog",
    "spacegroup_relax",
    "Egap_type",
    "aflowlib_version",
    "aflowlib_date",
)

# How aflowlib.out text maps onto the JSON shapes of aflowlib.json. The text format writes a
# list as "a,b,c" and a list of rows as "a,b;c,d", which loses the difference between one
# value and a list of one value; these tables restore it for the keywords where the JSON
# twins show that a list is meant.

#: Keywords whose value is a list even when it holds a single item.
_LIST_KEYWORDS = frozenset(
    {
        "aflow_prototype_parameter_list_orig",
        "aflow_prototype_parameter_list_relax",
        "aflow_prototype_parameter_values_orig",
        "aflow_prototype_parameter_values_relax",
        "anrl_parameter_list_orig",
        "anrl_parameter_list_relax",
        "anrl_parameter_values_orig",
        "anrl_parameter_values_relax",
        "bader_atomic_volumes",
        "bader_net_charges",
        "composition",
        "dft_type",
        "files",
        "geometry",
        "geometry_orig",
        "kpoints_bands_path",
        "kpoints_relax",
        "kpoints_static",
        "ldau_j",
        "ldau_l",
        "ldau_u",
        "loop",
        "nbondxx",
        "reciprocal_geometry",
        "reciprocal_geometry_orig",
        "sg",
        "sg2",
        "species",
        "species_pp",
        "species_pp_AUID",
        "species_pp_version",
        "species_pp_ZVAL",
        "spinD",
        "stoich",
        "stoichiometry",
        "stress_tensor",
    }
)

#: Keywords holding one row per atom, Wyckoff orbit or tensor row ("x,y,z;x,y,z").
_ROW_KEYWORDS = frozenset(
    {
        "ael_compliance_tensor",
        "ael_stiffness_tensor",
        "forces",
        "positions_cartesian",
        "positions_fractional",
        "Wyckoff_letters",
        "Wyckoff_letters_orig",
        "Wyckoff_multiplicities",
        "Wyckoff_multiplicities_orig",
        "Wyckoff_site_symmetries",
        "Wyckoff_site_symmetries_orig",
    }
)

#: Keywords whose ";"-separated parts are each a list or one value, e.g. ``kpoints``:
#: relaxation grid; static grid; band path; points per segment.
_PART_KEYWORDS = frozenset({"kpoints", "ldau_TLUJ"})

#: Keywords that are text even when they read as a number (the LIB2 prototype "17", site
#: symmetry "2", point group "1", an AUID of hexadecimal digits).
_TEXT_KEYWORDS = frozenset(
    {
        "auid",
        "aurl",
        "catalog",
        "code",
        "compound",
        "data_api",
        "data_source",
        "Egap_type",
        "point_group_Hermann_Mauguin",
        "point_group_Hermann_Mauguin_orig",
        "point_group_orbifold",
        "point_group_orbifold_orig",
        "prototype",
        "species_pp_AUID",
        "title",
        "Wyckoff_site_symmetries",
        "Wyckoff_site_symmetries_orig",
    }
)

#: The legacy ``stoich`` keyword separates its values by spaces, not commas.
_SPACE_LIST_KEYWORDS = frozenset({"stoich"})

_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_FIELD_SEPARATOR = re.compile(r"\s*\|\s*")
_FORMULA_TERM = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CATALOG = re.compile(r"[A-Za-z0-9]+")
_PAGE_KEY = re.compile(r"\s*(\d+)\s+of\s+(\d+)\s*")
#: An auid that can be quoted in a matchbook as it is (``aflow:0003b1ab0ca0d60a``).
_AUID = re.compile(r"[A-Za-z0-9:._-]+")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# aflowlib.out text


def _token(keyword: str, text: str) -> Any:
    """One value of the text format: int, float or text."""
    text = text.strip()
    if keyword in _TEXT_KEYWORDS:
        return text
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _items(keyword: str, text: str) -> list[Any]:
    return [_token(keyword, item) for item in text.split(",")]


def parse_aflowlib_value(keyword: str, text: str) -> Any:
    """Turn one aflowlib.out value into the JSON value aflowlib.json gives the keyword.

    ``"2,6"`` becomes ``[2, 6]``, ``"0,0,0;0.5,0.5,0.5"`` a list of rows, ``"4.1084"`` a
    float; the keyword decides between a single value and a list of one item.
    """
    text = text.strip()
    if keyword in _ROW_KEYWORDS:
        return [_items(keyword, row) for row in text.split(";")]
    if keyword in _PART_KEYWORDS or ";" in text:
        return [
            _items(keyword, part) if "," in part else _token(keyword, part)
            for part in text.split(";")
        ]
    if keyword in _SPACE_LIST_KEYWORDS and "," not in text:
        return [_token(keyword, item) for item in text.split()]
    if keyword in _LIST_KEYWORDS or "," in text:
        return _items(keyword, text)
    return _token(keyword, text)


def parse_aflowlib_out(text: str, where: str = "aflowlib.out") -> dict[str, Any]:
    """Parse aflowlib.out text (``key=value | key=value …``) into the aflowlib.json dict.

    Numbers become int or float, comma-separated values lists, ``;``-separated rows lists of
    lists (``positions_fractional``, ``forces``, Wyckoff data), as in aflowlib.json. Keywords
    written with an empty value are left out, as aflowlib.json leaves them out.

    Parameters
    ----------
    text
        The file's text.
    where
        Names the file in error messages.

    Raises
    ------
    RecordError
        If the text is empty, a field is not ``key=value`` or a keyword appears twice.
    """
    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"{where}: empty aflowlib.out text")
    entry: dict[str, Any] = {}
    for number, field in enumerate(_FIELD_SEPARATOR.split(text.strip()), start=1):
        keyword, separator, value = field.partition("=")
        keyword = keyword.strip()
        if not separator or not _KEYWORD.fullmatch(keyword):
            raise RecordError(f"{where}: field {number} ({field[:60]!r}) is not keyword=value")
        if keyword in entry:
            raise RecordError(f"{where}: keyword {keyword!r} appears twice")
        if value.strip():
            entry[keyword] = parse_aflowlib_value(keyword, value)
    return entry


# ---------------------------------------------------------------------------------------
# aflowlib entry -> structure, properties, metadata


def _entry_name(entry: Mapping[str, Any], where: str | None) -> str:
    identity = entry.get("auid") or entry.get("aurl") or "aflowlib entry without auid"
    return f"{identity} ({where})" if where else str(identity)


def _value(entry: Mapping[str, Any], keyword: str) -> Any:
    """An entry's value; text (AFLUX may answer numbers and lists as text) read as in .out."""
    value = entry.get(keyword)
    if isinstance(value, str) and keyword not in _TEXT_KEYWORDS:
        return parse_aflowlib_value(keyword, value) if value.strip() else None
    return value


def _finite(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


def _required(entry: Mapping[str, Any], keyword: str, name: str) -> Any:
    value = _value(entry, keyword)
    if value is None or value == []:
        present = ", ".join(sorted(entry)[:12]) + (" …" if len(entry) > 12 else "")
        raise RecordError(
            f"{name}: no {keyword!r} keyword, so no structure can be built "
            f"(the entry has: {present or 'nothing'})"
        )
    return value


def _lattice(entry: Mapping[str, Any], name: str) -> Lattice:
    geometry = _required(entry, "geometry", name)
    try:
        a, b, c, alpha, beta, gamma = (_finite(v) for v in geometry)
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"{name}: geometry must be six numbers a, b, c, alpha, beta, gamma, not {geometry!r}"
        ) from exc
    if min(a, b, c) <= 0 or not all(0 < angle < 180 for angle in (alpha, beta, gamma)):
        raise RecordError(f"{name}: geometry {geometry!r} is not a cell")
    cosines = [math.cos(math.radians(angle)) for angle in (alpha, beta, gamma)]
    # The squared volume factor; pymatgen would silently clip impossible angle sets.
    radicand = 1 - sum(x * x for x in cosines) + 2 * cosines[0] * cosines[1] * cosines[2]
    if radicand <= 1e-10:
        raise RecordError(f"{name}: the angles of geometry {geometry!r} do not span a cell")
    return Lattice.from_parameters(a, b, c, alpha, beta, gamma)


def _formula_counts(compound: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    position = 0
    for match in _FORMULA_TERM.finditer(compound):
        if match.start() != position:
            break
        counts[match.group(1)] = counts.get(match.group(1), 0) + float(match.group(2) or 1)
        position = match.end()
    if position != len(compound) or not counts:
        raise ValueError(f"unreadable compound {compound!r}")
    return counts


def _site_species(entry: Mapping[str, Any], name: str) -> list[str]:
    """The element of every position: ``species[i]`` repeated ``composition[i]`` times."""
    species = _required(entry, "species", name)
    if isinstance(species, str):
        species = [species]
    if not isinstance(species, list) or not all(isinstance(s, str) for s in species):
        raise RecordError(f"{name}: species must be a list of element symbols, not {species!r}")
    for symbol in species:
        if not Element.is_valid_symbol(symbol):
            raise RecordError(f"{name}: species holds {symbol!r}, which is not an element")
    compound = entry.get("compound")
    try:
        compound_counts = _formula_counts(compound) if isinstance(compound, str) else None
    except ValueError as exc:
        raise RecordError(f"{name}: {exc}") from exc
    composition = _value(entry, "composition")
    if composition is None:
        if compound_counts is None:
            raise RecordError(f"{name}: neither composition nor compound gives the atom counts")
        composition = [compound_counts.get(symbol, 0) for symbol in species]
    if isinstance(composition, int | float):
        composition = [composition]
    try:
        counts = [_finite(n) for n in composition]
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{name}: composition {composition!r} is not a list of counts") from exc
    if len(counts) != len(species) or any(n < 1 or n != int(n) for n in counts):
        raise RecordError(
            f"{name}: composition {composition!r} does not give a whole number of atoms "
            f"for each of the species {species}"
        )
    if compound_counts is not None and compound_counts != dict(zip(species, counts, strict=True)):
        raise RecordError(
            f"{name}: composition {composition!r} of species {species} disagrees with "
            f"compound {compound!r}"
        )
    return [symbol for symbol, n in zip(species, counts, strict=True) for _ in range(int(n))]


def _positions(entry: Mapping[str, Any], name: str) -> np.ndarray:
    positions = _required(entry, "positions_fractional", name)
    if not isinstance(positions, list):
        raise RecordError(f"{name}: positions_fractional is not a list but {positions!r:.80}")
    if not isinstance(positions[0], list):  # one atom written as a flat list
        positions = [positions]
    try:
        array = np.array([[_finite(x) for x in row] for row in positions], dtype=float)
    except (TypeError, ValueError) as exc:
        raise RecordError(
            f"{name}: positions_fractional holds a value that is not a number"
        ) from exc
    if array.ndim != 2 or array.shape[1] != 3:
        raise RecordError(f"{name}: positions_fractional must hold three coordinates per atom")
    return array


def parse_aflowlib_entry(
    entry: Mapping[str, Any], where: str | None = None
) -> tuple[Structure, dict[str, float | None], dict[str, Any]]:
    """Build the structure, properties and metadata of one aflowlib entry.

    Parameters
    ----------
    entry
        An aflowlib.json dict, the :func:`parse_aflowlib_out` dict of an aflowlib.out file, or
        one entry of an AFLUX page (whose numbers may be given as text).
    where
        The file or URL the entry came from, added to error messages.

    Returns
    -------
    structure
        The relaxed cell with one site per atom, in the entry's order.
    properties
        ``band_gap`` (eV) from ``Egap`` and ``formation_energy_per_atom`` (eV/atom) from
        ``enthalpy_formation_atom``; None where the entry has no value.
    extra
        auid, aurl, compound, catalog, spacegroup_relax, Egap_type, aflowlib_version and
        aflowlib_date, those the entry has.

    Raises
    ------
    RecordError
        If the entry lacks geometry, positions or species, or they disagree (positions
        count against ``natoms`` and ``composition``); the message names the entry's auid.
    """
    if not isinstance(entry, Mapping):
        raise RecordError(f"{where or 'aflowlib entry'}: not a JSON object but {type(entry)}")
    name = _entry_name(entry, where)
    lattice = _lattice(entry, name)
    positions = _positions(entry, name)
    species = _site_species(entry, name)
    natoms = _value(entry, "natoms")
    if natoms is not None and natoms != len(positions):
        raise RecordError(
            f"{name}: natoms is {natoms} but positions_fractional holds {len(positions)} atoms"
        )
    if len(species) != len(positions):
        raise RecordError(
            f"{name}: composition counts {len(species)} atoms but positions_fractional "
            f"holds {len(positions)}"
        )
    structure = Structure(lattice, species, positions)
    properties: dict[str, float | None] = {}
    for keyword, prop in AFLOW_PROPERTIES.items():
        raw = entry.get(keyword)
        try:
            properties[prop] = as_number(raw)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{name}: {keyword} is not a number: {raw!r}") from exc
    extra = {
        keyword: _value(entry, keyword)
        for keyword in EXTRA_KEYWORDS
        if entry.get(keyword) not in (None, "", [])
    }
    return structure, properties, extra


# ---------------------------------------------------------------------------------------
# AFLUX


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
        if not _KEYWORD.fullmatch(keyword):
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
            entries = _refreshed_entries(client, spec, cache, snapshot)
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


def _refreshed_entries(
    client: JsonClient, spec: AflowSourceSpec, cache: EntryCache, snapshot: SnapshotBuilder
) -> list[tuple[int, dict[str, Any]]] | None:
    """The query's ``(index, entry)`` pairs in listing order, fetching only what changed.

    With nothing saved yet, the query is read in full, its entries being their own listing.
    Saves the refreshed entries and sets ``snapshot.changes``. Returns None, and the read
    fetches every entry as usual, when the listing holds an entry without a usable auid.
    """
    size = page_size(spec)
    if not cache.entries:
        matchbook = aflux_matchbook(spec)
        entries = list(aflux_entries(client, spec, matchbook, size, spec.limit, snapshot))
        listing = _listing(entries, spec.name)
        if listing is None:
            return entries
        fetched: dict[str, dict[str, Any]] = {}
        for _, entry in entries:
            fetched.setdefault(entry["auid"], entry)
    else:
        matchbook = aflux_matchbook(spec, LISTING_KEYWORDS)
        listed = aflux_entries(client, spec, matchbook, size, spec.limit, snapshot)
        listing = _listing(listed, spec.name)
        if listing is None:
            return None
        fetched = _fetch_by_auid(client, spec, cache.stale(listing))
    documents, snapshot.changes = cache.refresh(listing, fetched, _aflowlib_date)
    cache.save()
    log.info("source %s: %s", spec.name, snapshot.changes.describe())
    return [
        (index, documents[auid])
        for index, (auid, _) in enumerate(listing, start=1)
        if auid in documents
    ]


def _aflowlib_date(entry: dict[str, Any]) -> Any:
    return entry.get("aflowlib_date")


def _listing(entries: Iterable[tuple[int, dict[str, Any]]], source: str) -> list[Listed] | None:
    """``(auid, aflowlib_date)`` of every entry; None if one has no auid that can be quoted."""
    listing: list[Listed] = []
    for _, entry in entries:
        auid = entry.get("auid")
        if not isinstance(auid, str) or not _AUID.fullmatch(auid):
            log.warning(
                "source %s: AFLUX lists an entry without a usable auid (%r); every entry is "
                "fetched and none is saved",
                source,
                auid,
            )
            return None
        listing.append((auid, _aflowlib_date(entry)))
    return listing


def _fetch_by_auid(
    client: JsonClient, spec: AflowSourceSpec, auids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The full entries of ``auids`` by auid, asked for in batches of the spec's keywords."""
    fetched: dict[str, dict[str, Any]] = {}
    batch_size = min(page_size(spec), MAX_IDS_PER_REQUEST)
    for start in range(0, len(auids), batch_size):
        batch = auids[start : start + batch_size]
        matchbook = aflux_matchbook(spec, auids=batch)
        asked = set(batch)
        for _, entry in aflux_entries(client, spec, matchbook, batch_size):
            if entry.get("auid") in asked:
                fetched.setdefault(entry["auid"], entry)
    return fetched


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
