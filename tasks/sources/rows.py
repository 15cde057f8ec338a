"""Rows of a table or of JSON lines made into structure records, and CIF text parsed."""

from __future__ import annotations

import csv
import gzip
import io
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError
from matscreen.tasks.sources.base import Item, failure, make_record
from matscreen.tasks.sources.properties import NotFiniteError, as_number
from matscreen.tasks.spec import PropertySpec


def parse_cif(text: str, where: str) -> Structure:
    """Parse one CIF text (its first data block) into a structure.

    Raises
    ------
    RecordError
        If the text is not a readable CIF or holds no structure; the message names ``where``.
    """
    structures = parse_cif_blocks(text, where)
    return structures[0]


def parse_cif_blocks(text: str, where: str) -> list[Structure]:
    """Parse every data block of a CIF text into structures (in file order).

    Raises
    ------
    RecordError
        If no block holds a readable structure; the message names ``where``.
    """
    from pymatgen.io.cif import CifParser

    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"{where}: empty CIF")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structures = CifParser.from_str(text).parse_structures(primitive=False)
        # pymatgen's CIF reader raises many exception types for malformed text; any of them
        # means this one record is unreadable, which is recorded and does not stop the source.
        except Exception as exc:
            raise RecordError(f"{where}: unreadable CIF ({type(exc).__name__}: {exc})") from exc
    if not structures or any(len(s) == 0 for s in structures):
        raise RecordError(f"{where}: CIF holds no atoms")
    return structures


#: Key of the stand-in row for a row that could not be parsed (a JSON line that is not an
#: object, a CSV row with the wrong field count, an extxyz frame ASE refuses); its value is
#: the reason.
INVALID = "__invalid__"


def lookup(row: Mapping[str, Any], key: str) -> Any:
    """Return ``row[key]``; a dotted key (``targets.regression.e_form``) reaches into nesting.

    Raises
    ------
    KeyError
        If the key (or a part of a dotted key) is absent.
    """
    if key in row:
        return row[key]
    value: Any = row
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(key)
        value = value[part]
    return value


def property_values(
    row: Mapping[str, Any], properties: Mapping[str, PropertySpec], where: str
) -> dict[str, float | None]:
    """Read the spec's properties from one row (CSV row, JSON object, extxyz info).

    A property given as ``max_of`` several columns takes the largest non-missing value
    (e.g. the larger of a direct and an indirect gap). Missing values (empty, ``null``,
    NaN) give no value; see :func:`~matscreen.tasks.sources.properties.as_number`.

    Raises
    ------
    RecordError
        If a named column or key is absent, or its value is not a number or not finite
        (``band_gap: inf is not a finite number``); the message names the key.
    """
    values: dict[str, float | None] = {}
    for name, prop in properties.items():
        found = []
        for column in prop.columns:
            try:
                raw = lookup(row, column)
            except KeyError as exc:
                raise RecordError(f"{where}: no column or key {column!r} ({name})") from exc
            try:
                value = as_number(raw)
            except NotFiniteError as exc:
                raise RecordError(f"{where}: {name}: {exc} (column {column!r})") from exc
            except ValueError as exc:
                raise RecordError(
                    f"{where}: column {column!r} ({name}) is not a number: {raw!r}"
                ) from exc
            if value is not None:
                found.append(value)
        values[name] = max(found) if found else None
    return values


def records_from_rows(
    spec: Any,
    rows: Iterable[tuple[int, Mapping[str, Any]]],
    label: str,
    id_key: str | None,
    structure_of: Any,
) -> Iterator[Item]:
    """Turn table-like rows (CSV rows, JSON objects, extxyz frames) into records.

    Parameters
    ----------
    spec
        The source spec (name, properties with units).
    rows
        ``(1-based position, mapping)`` pairs. A row that could not be parsed at all is
        ``{INVALID: reason}`` and becomes a failure with that reason.
    label
        How the rows' file is named in ids and messages.
    id_key
        Column giving each row's id; without it the id is ``label#position``.
    structure_of
        ``structure_of(row, where) -> Structure``; raises RecordError for a bad row.
    """
    units = {name: prop.unit for name, prop in spec.properties.items()}
    for position, row in rows:
        source_id = f"{label}#{position}"
        if id_key is not None and INVALID not in row:
            raw_id = row.get(id_key)
            source_id = "" if raw_id is None else str(raw_id).strip()
        where = f"{label} row {position} (id {source_id or '?'})"
        try:
            if INVALID in row:
                raise RecordError(f"{where}: {row[INVALID]}")
            if source_id in ("", "nan"):
                raise RecordError(f"{where}: missing id")
            structure = checked_structure(structure_of(row, where), where)
            properties = property_values(row, spec.properties, where)
            record = make_record(spec, source_id, position, structure, properties, units=units)
        except RecordError as exc:
            yield failure(spec, source_id or f"{label}#{position}", position, str(exc))
            continue
        yield record


def checked_structure(structure: Structure, where: str) -> Structure:
    """Return ``structure`` if its cell and coordinates are finite and the cell has a volume.

    Raises
    ------
    RecordError
        If the lattice or a coordinate is NaN or infinite, or the cell is flat (volume 0).
    """
    if not (
        np.isfinite(structure.lattice.matrix).all() and np.isfinite(structure.frac_coords).all()
    ):
        raise RecordError(f"{where}: lattice or coordinates hold NaN or infinity")
    if not structure.lattice.volume > 1e-6:
        raise RecordError(f"{where}: degenerate cell (volume {structure.lattice.volume:g} Å³)")
    return structure


#: What reading a (possibly gzipped) file may raise when the file or the disk is bad.
UNREADABLE = (OSError, EOFError, zlib.error)


def open_bytes(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, gunzipped when its name ends in ``.gz``."""
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


@contextmanager
def open_text(path: Path) -> Iterator[Iterator[str]]:
    """The lines of a (possibly gzipped) UTF-8 file, each decoded as it is read, for
    :func:`csv_rows` or JSON lines: a byte-order mark is dropped and line ends are kept
    (for the CSV reader). A byte that is not UTF-8 raises UnicodeDecodeError naming its
    line, when that line is reached."""
    with open_bytes(Path(path)) as handle:

        def lines() -> Iterator[str]:
            for number, line in enumerate(handle, start=1):
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    reason = f"{exc.reason} (line {number}, byte {exc.start + 1} of it)"
                    raise UnicodeDecodeError(
                        exc.encoding, exc.object, exc.start, exc.end, reason
                    ) from None
                yield text.removeprefix("\ufeff") if number == 1 else text

        yield lines()


def repeated_columns(header: list[str]) -> list[str]:
    """The column names a CSV header holds more than once (a table whose rows could be read
    two ways), sorted."""
    return sorted({name for name in header if header.count(name) > 1})


def csv_rows(
    text: str | Iterable[str],
) -> tuple[list[str], Iterator[tuple[int, Mapping[str, Any]]]]:
    """The header and the ``(position, row)`` pairs of a CSV text, or of its lines as they
    are read (a file opened with ``newline=""``: rows are then read one at a time); a row
    with another field count than the header, or that the CSV reader refuses, is an
    ``INVALID`` row naming its line. Empty cells are None."""
    # A cell may hold a whole CIF, beyond the csv module's default limit of 128 KiB.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    reader = csv.reader(io.StringIO(text, newline="") if isinstance(text, str) else text)
    header = next(reader, [])

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        position = 0
        while True:
            first = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                position += 1
                yield position, {INVALID: f"unreadable CSV row ({exc}) at line {first}"}
                if reader.line_num < first:  # the reader cannot get past it
                    return
                continue
            if not fields:
                continue
            position += 1
            lines = (
                f"line {first}" if reader.line_num == first else f"lines {first}-{reader.line_num}"
            )
            if len(fields) != len(header):
                reason = f"{len(fields)} fields where the header has {len(header)} ({lines})"
                yield position, {INVALID: reason}
                continue
            yield (
                position,
                {k: (None if v == "" else v) for k, v in zip(header, fields, strict=True)},
            )

    return header, rows()
