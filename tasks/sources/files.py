"""Structures from local files: CIF, POSCAR, pymatgen JSON, extxyz, CSV, JSON lines, aflowlib.

A ``files`` source reads one file, or every file under a folder that matches ``pattern``
(``**/*.cif`` reaches into sub-folders). The format is taken from the spec or, with
``format: auto``, from each file's name and content:

===================  ========================================================
``*.cif``            every data block of the CIF (id ``name.cif`` or ``name.cif#2``)
``POSCAR*``,         VASP structure
``CONTCAR*``,
``*.vasp``
``*.json[.gz]``      a pymatgen ``Structure`` dict, a list of them, an object
                     with a ``structure`` key, or an aflowlib.json entry
``*.extxyz``,        every frame (ASE); properties from each frame's info dict
``*.xyz``
``*.csv``            one structure per row as CIF text (column ``structure_key``,
                     default ``cif``)
``*.jsonl``          one JSON object a line with a pymatgen structure dict under
                     ``structure_key`` (default ``structure``)
``*.out``            an aflowlib.out entry (AFLOW ``key=value | …`` text)
===================  ========================================================

Rows of CSV, JSON lines and extxyz frames take their id from ``id_key`` when given, and
their properties from the columns or keys the spec maps (``a.b`` reaches into nested JSON).
A file or row that cannot be read becomes a failure naming it (and the row, line or frame)
with the reason; the others are still read. In a folder that includes a file of no known
format (a README), a binary or empty file, a broken symbolic link: each is one failure, so
every file that matches is either read or reported, never passed over.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.sources.rows import (
    INVALID,
    UNREADABLE,
    checked_structure,
    csv_rows,
    lookup,
    open_bytes,
    parse_cif,
    parse_cif_blocks,
    records_from_rows,
    repeated_columns,
)
from matscreen.tasks.spec import FilesSourceSpec

# -- formats ---------------------------------------------------------------------------------

#: File names ``format: auto`` recognizes, for messages.
KNOWN_NAMES = (
    "*.cif, POSCAR*, CONTCAR*, *.vasp, *.poscar, *.json, *.jsonl, *.extxyz, *.xyz, *.csv, "
    "*.out, each also gzipped (.gz)"
)


def _format_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(".cif"):
        return "cif"
    if name.startswith(("poscar", "contcar")) or name.endswith((".vasp", ".poscar")):
        return "poscar"
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".json"):
        return "pymatgen_json"
    if name.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".out"):
        return "aflowlib"
    return None


def detect_format(path: Path) -> str:
    """Return the format of a structure file from its name (``auto`` resolution).

    Raises
    ------
    SourceError
        If the name says nothing matscreen can read.
    """
    found = _format_of(path)
    if found is None:
        raise SourceError(
            f"{path}: cannot tell the structure format from the file name (known: {KNOWN_NAMES})"
        )
    return found


def _read_text(path: Path, label: str) -> str:
    """The file's text (gunzipped), newlines as ``\n``.

    Raises
    ------
    RecordError
        If the text is not UTF-8; the message names the file, line and byte offset.
    """
    with open_bytes(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RecordError(
            f"{label}: not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}, "
            f"offset {exc.start}); is it a binary file?"
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _json_error(exc: Exception, one_line: bool = False) -> str:
    if isinstance(exc, json.JSONDecodeError):
        at = f"column {exc.colno}" if one_line else f"line {exc.lineno} column {exc.colno}"
        return f"{exc.msg} at {at}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(text.strip()[:80])


def _structure_from_dict(value: Any, where: str) -> Structure:
    if not isinstance(value, Mapping) or "lattice" not in value or "sites" not in value:
        raise RecordError(f"{where}: not a pymatgen structure dict")
    try:
        return Structure.from_dict(dict(value))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise RecordError(
            f"{where}: unreadable structure dict ({type(exc).__name__}: {exc})"
        ) from exc


def _is_aflowlib_entry(value: Any) -> bool:
    if not isinstance(value, Mapping) or "geometry" not in value:
        return False
    return "auid" in value or "aurl" in value


def _read_cif(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    try:
        structures = parse_cif_blocks(_read_text(path, label), label)
    except RecordError as exc:
        yield failure(spec, label, 1, str(exc))
        return
    for position, structure in enumerate(structures, start=1):
        source_id = label if len(structures) == 1 else f"{label}#{position}"
        yield _single(spec, source_id, position, lambda s=structure: s)


def _single(spec: FilesSourceSpec, source_id: str, position: int, build: Any) -> Item:
    """A record from a file holding one structure and no properties, or its failure."""
    try:
        return make_record(spec, source_id, position, checked_structure(build(), source_id), {})
    except RecordError as exc:
        return failure(spec, source_id, position, str(exc))


def _read_poscar(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from pymatgen.io.vasp import Poscar

    def build() -> Structure:
        text = _read_text(path, label)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Poscar.from_str(text).structure
        # Poscar raises ValueError, IndexError … for malformed text: all mean "unreadable".
        except Exception as exc:
            raise RecordError(f"{label}: unreadable POSCAR ({type(exc).__name__}: {exc})") from exc

    yield _single(spec, label, 1, build)


def _read_json(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    try:
        document = json.loads(_read_text(path, label))
    except RecordError as exc:
        yield failure(spec, label, 1, str(exc))
        return
    except (ValueError, RecursionError) as exc:
        yield failure(spec, label, 1, f"{label}: not valid JSON ({_json_error(exc)})")
        return
    if _is_aflowlib_entry(document):
        yield from _aflowlib(spec, document, label)
        return
    if isinstance(document, Mapping) and "lattice" in document:
        yield _single(spec, label, 1, lambda: _structure_from_dict(document, label))
        return
    rows = document if isinstance(document, list) else [document]
    key = spec.structure_key or "structure"

    def structure_of(row: Mapping[str, Any], where: str) -> Structure:
        value = row if "lattice" in row else _get(row, key, where)
        return _structure_from_dict(value, where)

    numbered = [
        (i, row if isinstance(row, Mapping) else {INVALID: f"not a JSON object: {_short(row)}"})
        for i, row in enumerate(rows, 1)
    ]
    yield from records_from_rows(spec, numbered, label, spec.id_key, structure_of)


def _get(row: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return lookup(row, key)
    except KeyError as exc:
        raise RecordError(f"{where}: no key {key!r}") from exc


def _read_jsonl(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    key = spec.structure_key or "structure"

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        with open_bytes(path) as handle:
            for position, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8-sig")
                    row = json.loads(line)
                except UnicodeDecodeError:
                    yield position, {INVALID: "not UTF-8 text"}
                    continue
                except (ValueError, RecursionError) as exc:
                    reason = f"not a JSON object ({_json_error(exc, True)}): {_short(line)}"
                    yield position, {INVALID: reason}
                    continue
                if not isinstance(row, Mapping):
                    row = {INVALID: f"not a JSON object: {_short(row)}"}
                yield position, row

    def structure_of(row: Mapping[str, Any], where: str) -> Structure:
        return _structure_from_dict(_get(row, key, where), where)

    yield from records_from_rows(spec, rows(), label, spec.id_key, structure_of)


def _read_csv(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    key = spec.structure_key or "cif"
    try:
        header, rows = csv_rows(_read_text(path, label))
    except RecordError as exc:
        yield failure(spec, label, 1, str(exc))
        return
    except csv.Error as exc:
        yield failure(spec, label, 1, f"{label}: unreadable CSV header ({exc})")
        return
    twice = repeated_columns(header)
    if twice:
        yield failure(spec, label, 1, f"{label}: column(s) {twice} appear twice in the header")
        return
    if key not in header:
        yield failure(spec, label, 1, f"{label}: no column {key!r} (columns: {header})")
        return
    yield from records_from_rows(
        spec, rows, label, spec.id_key, lambda row, where: parse_cif(row[key], where)
    )


def _read_extxyz(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    def frames() -> Iterator[tuple[int, Mapping[str, Any]]]:
        position = 0
        try:
            for position, atoms in enumerate(iread(str(path), index=":"), start=1):
                yield position, {**atoms.info, "__atoms__": atoms}
        # ASE's readers raise assorted errors on a malformed frame, and cannot go on past it.
        except Exception as exc:
            reason = f"unreadable extxyz frame ({type(exc).__name__}: {exc})"
            yield position + 1, {INVALID: f"{reason}; the frames after it are not read"}

    def structure_of(row: Mapping[str, Any], where: str) -> Structure:
        atoms = row["__atoms__"]
        if not all(atoms.pbc):
            raise RecordError(f"{where}: frame is not periodic in all three directions")
        return AseAtomsAdaptor.get_structure(atoms)

    yield from records_from_rows(spec, frames(), label, spec.id_key, structure_of)


def _aflowlib(spec: FilesSourceSpec, entry: Mapping[str, Any], label: str) -> Iterator[Item]:
    from matscreen.tasks.sources.aflowlib import parse_aflowlib_entry

    # The file, not the auid, names the record: an entry's .json and .out files are two
    # records of one structure, which deduplication links.
    try:
        structure, properties, extra = parse_aflowlib_entry(dict(entry))
        structure = checked_structure(structure, label)
        yield make_record(spec, label, 1, structure, properties, extra)
    except RecordError as exc:
        yield failure(spec, label, 1, f"{label}: {exc}")


def _read_aflowlib(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from matscreen.tasks.sources.aflowlib import parse_aflowlib_out

    try:
        text = _read_text(path, label)
        entry = json.loads(text) if text.lstrip().startswith("{") else parse_aflowlib_out(text)
    except (ValueError, RecursionError) as exc:
        yield failure(spec, label, 1, f"{label}: not valid JSON ({_json_error(exc)})")
        return
    except RecordError as exc:
        message = str(exc)
        yield failure(
            spec, label, 1, message if message.startswith(label) else f"{label}: {message}"
        )
        return
    yield from _aflowlib(spec, entry, label)


_READERS = {
    "cif": _read_cif,
    "poscar": _read_poscar,
    "pymatgen_json": _read_json,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "extxyz": _read_extxyz,
    "aflowlib": _read_aflowlib,
}


def _files(spec: FilesSourceSpec) -> tuple[Path, list[Path]]:
    path = Path(spec.path)
    if path.is_file():
        return path.parent, [path]
    # Everything but folders: a dangling link, a link loop or a FIFO is listed too, so that
    # it becomes a failure naming it rather than a file quietly passed over.
    found = sorted(p for p in path.glob(spec.pattern) if not p.is_dir())
    if not found:
        raise SourceError(f"source {spec.name}: no file in {path} matches {spec.pattern!r}")
    return path, found


def _os_reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _not_a_file(path: Path) -> str | None:
    """Why a listed path cannot be read as a file (a broken link, a FIFO …), or None."""
    if path.is_file():
        return None
    try:
        path.stat()
    except OSError as exc:
        if path.is_symlink() and exc.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"dangling symbolic link (to {os.readlink(path)}, which does not exist)"
        return _os_reason(exc)
    return "not a regular file"


def _read_file(
    spec: FilesSourceSpec, snapshot: SnapshotBuilder, path: Path, label: str, form: str | None
) -> Iterator[Item]:
    """The items of one file; a file that cannot be read at all is one failure naming it."""
    problem = _not_a_file(path)
    if problem is None and snapshot.file_sha256 is None:
        try:
            snapshot.add_document({"file": label, "sha256": file_sha256(path)})
        except UNREADABLE as exc:
            problem = f"cannot read the file ({_os_reason(exc)})"
    if problem is None and form is None:
        problem = (
            f"not a structure file (cannot tell its format from the name; known: {KNOWN_NAMES})"
        )
    if problem is None and path.stat().st_size == 0:
        problem = "empty file"
    if problem is not None:
        if snapshot.file_sha256 is None:
            snapshot.add_document({"file": label, "unreadable": problem})
        yield failure(spec, label, 1, f"{label}: {problem}")
        return
    count = 0
    try:
        for item in _READERS[str(form)](spec, path, label):
            count += 1
            yield item
    except UNREADABLE as exc:
        after = f" after {count} records" if count else ""
        yield failure(
            spec, label, count + 1, f"{label}: cannot read the file{after} ({_os_reason(exc)})"
        )
        return
    if count == 0:
        yield failure(spec, label, 1, f"{label}: holds no structure")


def iter_files(spec: FilesSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read the structures of a ``files`` source, file by file.

    Every file that matches is used: a file that cannot be read (not a structure file,
    not UTF-8 text, unparseable, empty, unreadable, a broken link) becomes one failure
    naming the file and the reason, a bad row or frame one failure naming its position,
    and the read goes on with the next.

    The snapshot of a single file is identified by that file's sha256; of a folder, by the
    relative path and sha256 of every file read.

    Raises
    ------
    SourceError
        If nothing matches, no file of a folder has a structure format matscreen knows, or
        the format of a single file cannot be told from its name.
    """
    root, paths = _files(spec)
    single = Path(spec.path).is_file()
    formats = {p: spec.format if spec.format != "auto" else _format_of(p) for p in paths}
    if single:
        formats[paths[0]] = spec.format if spec.format != "auto" else detect_format(paths[0])
    elif not any(formats.values()):
        names = ", ".join(p.relative_to(root).as_posix() for p in paths[:5])
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        raise SourceError(
            f"source {spec.name}: no structure file in {root} matches {spec.pattern!r}: "
            f"{names}{more}: cannot tell the structure format from the file name "
            f"(known: {KNOWN_NAMES})"
        )
    snapshot.query.update(
        {
            "pattern": spec.pattern if not single else None,
            "format": spec.format,
            "id_key": spec.id_key,
            "structure_key": spec.structure_key,
            "properties": {k: v.model_dump(exclude_none=True) for k, v in spec.properties.items()},
            "files": len(paths),
        }
    )
    if single:
        try:
            snapshot.set_file(paths[0])
        except UNREADABLE:
            pass  # _read_file reports it as the file's failure
    for path in paths:
        yield from _read_file(
            spec, snapshot, path, path.relative_to(root).as_posix(), formats[path]
        )
