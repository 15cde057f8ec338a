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
A file or row that cannot be read becomes a failure naming it; the others are still read.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.spec import FilesSourceSpec, PropertySpec


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


#: Key of the stand-in row for a JSON line that is not an object.
_INVALID = "__not_json__"


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
    (e.g. the larger of a direct and an indirect gap).

    Raises
    ------
    RecordError
        If a named column or key is absent or its value is not a number.
    """
    values: dict[str, float | None] = {}
    for name, prop in properties.items():
        found = []
        for column in prop.columns:
            try:
                raw = lookup(row, column)
            except KeyError as exc:
                raise RecordError(f"{where}: no column or key {column!r} ({name})") from exc
            if raw is None:
                continue
            try:
                value = float(raw)
            except (TypeError, ValueError) as exc:
                raise RecordError(
                    f"{where}: column {column!r} ({name}) is not a number: {raw!r}"
                ) from exc
            if not math.isnan(value):
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
        ``(1-based position, mapping)`` pairs.
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
        if id_key is not None:
            raw_id = row.get(id_key)
            source_id = "" if raw_id is None else str(raw_id).strip()
        where = f"{label} row {position} (id {source_id or '?'})"
        try:
            if _INVALID in row:
                raise RecordError(f"{where}: not a JSON object: {row[_INVALID]!r}")
            if source_id in ("", "nan"):
                raise RecordError(f"{where}: missing id")
            structure = structure_of(row, where)
            properties = property_values(row, spec.properties, where)
            record = make_record(spec, source_id, position, structure, properties, units=units)
        except RecordError as exc:
            yield failure(spec, source_id or f"{label}#{position}", position, str(exc))
            continue
        yield record


# -- formats ---------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """Return the format of a structure file from its name (``auto`` resolution).

    Raises
    ------
    SourceError
        If the name says nothing matscreen can read.
    """
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
    raise SourceError(f"{path}: cannot tell the structure format from the file name")


def _read_text(path: Path) -> str:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read()


def _structure_from_dict(value: Any, where: str) -> Structure:
    if not isinstance(value, Mapping) or "lattice" not in value or "sites" not in value:
        raise RecordError(f"{where}: not a pymatgen structure dict")
    try:
        return Structure.from_dict(value)
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{where}: unreadable structure dict ({exc})") from exc


def _is_aflowlib_entry(value: Any) -> bool:
    if not isinstance(value, Mapping) or "geometry" not in value:
        return False
    return "auid" in value or "aurl" in value


def _read_cif(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    try:
        structures = parse_cif_blocks(_read_text(path), label)
    except RecordError as exc:
        yield failure(spec, label, 1, str(exc))
        return
    for position, structure in enumerate(structures, start=1):
        source_id = label if len(structures) == 1 else f"{label}#{position}"
        yield _single(spec, source_id, position, lambda s=structure: s)


def _single(spec: FilesSourceSpec, source_id: str, position: int, build: Any) -> Item:
    """A record from a file holding one structure and no properties, or its failure."""
    try:
        return make_record(spec, source_id, position, build(), {})
    except RecordError as exc:
        return failure(spec, source_id, position, str(exc))


def _read_poscar(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from pymatgen.io.vasp import Poscar

    def build() -> Structure:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return Poscar.from_str(_read_text(path)).structure
        # Poscar raises ValueError, IndexError … for malformed text: all mean "unreadable".
        except Exception as exc:
            raise RecordError(f"{label}: unreadable POSCAR ({type(exc).__name__}: {exc})") from exc

    yield _single(spec, label, 1, build)


def _read_json(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    try:
        document = json.loads(_read_text(path))
    except (UnicodeDecodeError, ValueError) as exc:
        yield failure(spec, label, 1, f"{label}: not valid JSON ({exc})")
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

    numbered = [(i, row if isinstance(row, Mapping) else {}) for i, row in enumerate(rows, 1)]
    yield from records_from_rows(spec, numbered, label, spec.id_key, structure_of)


def _get(row: Mapping[str, Any], key: str, where: str) -> Any:
    try:
        return lookup(row, key)
    except KeyError as exc:
        raise RecordError(f"{where}: no key {key!r}") from exc


def _read_jsonl(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    key = spec.structure_key or "structure"

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for position, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    row = {_INVALID: line.strip()[:80]}
                yield position, row if isinstance(row, Mapping) else {_INVALID: str(row)[:80]}

    def structure_of(row: Mapping[str, Any], where: str) -> Structure:
        return _structure_from_dict(_get(row, key, where), where)

    yield from records_from_rows(spec, rows(), label, spec.id_key, structure_of)


def _read_csv(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    import pandas as pd

    key = spec.structure_key or "cif"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        yield failure(spec, label, 1, f"{label}: cannot read as CSV ({exc})")
        return
    if key not in frame.columns:
        raise SourceError(f"source {spec.name}: {path} has no column {key!r}")
    rows = (
        (i, {k: (None if v == "" else v) for k, v in row.items()})
        for i, row in enumerate(frame.to_dict("records"), start=1)
    )
    yield from records_from_rows(
        spec, rows, label, spec.id_key, lambda row, where: parse_cif(row[key], where)
    )


def _read_extxyz(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    def frames() -> Iterator[tuple[int, Mapping[str, Any]]]:
        try:
            for position, atoms in enumerate(iread(str(path), index=":"), start=1):
                yield position, {**atoms.info, "__atoms__": atoms}
        # ASE's readers raise assorted errors on malformed frames; the file is then bad.
        except Exception as exc:
            raise SourceError(f"source {spec.name}: {label}: unreadable extxyz ({exc})") from exc

    def structure_of(row: Mapping[str, Any], where: str) -> Structure:
        atoms = row["__atoms__"]
        if not all(atoms.pbc):
            raise RecordError(f"{where}: frame is not periodic in all three directions")
        return AseAtomsAdaptor.get_structure(atoms)

    yield from records_from_rows(spec, frames(), label, spec.id_key, structure_of)


def _aflowlib(spec: FilesSourceSpec, entry: Mapping[str, Any], label: str) -> Iterator[Item]:
    from matscreen.tasks.sources.aflow import parse_aflowlib_entry

    # The file, not the auid, names the record: an entry's .json and .out files are two
    # records of one structure, which deduplication links.
    try:
        structure, properties, extra = parse_aflowlib_entry(dict(entry))
        yield make_record(spec, label, 1, structure, properties, extra)
    except RecordError as exc:
        yield failure(spec, label, 1, f"{label}: {exc}")


def _read_aflowlib(spec: FilesSourceSpec, path: Path, label: str) -> Iterator[Item]:
    from matscreen.tasks.sources.aflow import parse_aflowlib_out

    text = _read_text(path)
    if text.lstrip().startswith("{"):
        entry = json.loads(text)
    else:
        try:
            entry = parse_aflowlib_out(text)
        except RecordError as exc:
            yield failure(spec, label, 1, f"{label}: {exc}")
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
    found = sorted(p for p in path.glob(spec.pattern) if p.is_file())
    if not found:
        raise SourceError(f"source {spec.name}: no file in {path} matches {spec.pattern!r}")
    return path, found


def iter_files(spec: FilesSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read the structures of a ``files`` source, file by file.

    The snapshot of a single file is identified by that file's sha256; of a folder, by the
    relative path and sha256 of every file read.

    Raises
    ------
    SourceError
        If nothing matches, a file's format cannot be told from its name, or a CSV lacks
        the structure column.
    """
    root, paths = _files(spec)
    formats = {p: spec.format if spec.format != "auto" else detect_format(p) for p in paths}
    snapshot.query.update(
        {
            "pattern": spec.pattern if Path(spec.path).is_dir() else None,
            "format": spec.format,
            "id_key": spec.id_key,
            "structure_key": spec.structure_key,
            "properties": {k: v.model_dump(exclude_none=True) for k, v in spec.properties.items()},
            "files": len(paths),
        }
    )
    if len(paths) == 1 and Path(spec.path).is_file():
        snapshot.set_file(paths[0])
    for path in paths:
        label = path.relative_to(root).as_posix()
        if snapshot.file_sha256 is None:
            snapshot.add_document({"file": label, "sha256": file_sha256(path)})
        yield from _READERS[formats[path]](spec, path, label)
