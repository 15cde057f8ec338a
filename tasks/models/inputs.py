"""Files given to ``matscreen train`` and ``matscreen predict``: checked before any work.

An input is a CSV with a ``cif`` column (one structure per row as CIF text) or JSON lines
with a pymatgen ``structure`` dict per line; an ``id`` column or key, when present, names
each row. The structures are read by the ``files`` source; this module looks at the raw
rows first, so that a missing column or a bad label is reported at once, before a
structure is parsed, a feature computed or a model fitted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from matscreen.tasks.errors import InputError
from matscreen.tasks.sources.rows import (
    INVALID,
    UNREADABLE,
    csv_rows,
    open_text,
    repeated_columns,
)
from matscreen.tasks.spec import FilesSourceSpec

#: Column or key of each input format that holds the structure.
STRUCTURE_KEYS = {"csv": "cif", "jsonl": "structure"}

#: Column or key that names rows, when present.
ID_KEY = "id"


def input_format(path: Path) -> str:
    """``csv`` or ``jsonl``, from the file name.

    Raises
    ------
    InputError
        If the file does not exist or is neither.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".jsonl"):
        return "jsonl"
    raise InputError(f"{path}: expected a .csv file (cif column) or a .jsonl file")


def read_rows(path: Path, strict: bool = True) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns (keys of the first row for JSON lines) and raw rows of an input.

    A CSV row with another field count than the header is refused when ``strict``, and
    left out otherwise (the ``files`` source that reads the input then reports it as an
    error of that row).

    Raises
    ------
    InputError
        If the file cannot be read, a JSON line is not an object, a CSV header repeats a
        column, a CSV row is malformed (``strict``), or there are no rows.
    """
    path = Path(path)
    kind = input_format(path)
    rows: list[dict[str, Any]] = []
    try:
        with open_text(path) as handle:
            if kind == "csv":
                columns, positions = csv_rows(handle)
                twice = repeated_columns(columns)
                if twice:
                    raise InputError(f"{path}: column(s) {twice} appear twice in the header")
                for position, row in positions:
                    if INVALID not in row:
                        rows.append(dict(row))
                    elif strict:
                        raise InputError(f"{path} row {position}: {row[INVALID]}")
            else:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise InputError(f"{path} line {number}: not JSON ({exc})") from exc
                    if not isinstance(row, dict):
                        raise InputError(f"{path} line {number}: not a JSON object")
                    rows.append(row)
                columns = list(rows[0]) if rows else []
    except (*UNREADABLE, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    if not rows:
        raise InputError(f"{path}: no rows")
    return columns, rows


def _label(value: Any) -> float | None:
    """A label as a finite float, or None when it is missing, not a number or not finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def check_input(path: Path, target: str | None = None, min_rows: int = 1) -> int:
    """Check an input file's columns and, for training, every label; return its row count.

    Parameters
    ----------
    path
        The CSV or JSON-lines file.
    target
        The label column training reads; None for prediction (no labels needed).
    min_rows
        Fewest rows the use needs (e.g. twice the cross-validation folds).

    Raises
    ------
    InputError
        If the structure column or the target column is missing (naming the columns
        there are), a label is empty, NaN, infinite or not a number (naming up to five
        rows by id), or there are fewer rows than ``min_rows``.
    """
    path = Path(path)
    kind = input_format(path)
    columns, rows = read_rows(path, strict=target is not None)
    structure_key = STRUCTURE_KEYS[kind]
    if structure_key not in columns:
        raise InputError(f"{path}: no {structure_key!r} column (columns: {columns})")
    if target is not None:
        if target not in columns:
            raise InputError(f"{path}: target column {target!r} not found (columns: {columns})")
        bad = []
        for position, row in enumerate(rows, start=1):
            if _label(row.get(target)) is None:
                name = row.get(ID_KEY) or f"row {position}"
                value = row.get(target)
                bad.append(f"{name}: {'empty' if value is None else repr(value)}")
        if bad:
            raise InputError(
                f"{path}: {len(bad)} rows have no numeric {target!r} label (empty, NaN, "
                f"infinite or not a number), e.g. {bad[:5]}"
            )
    if len(rows) < min_rows:
        raise InputError(f"{path}: {len(rows)} rows; at least {min_rows} needed")
    return len(rows)


def has_ids(path: Path) -> bool:
    """Whether the input names its rows with an ``id`` column or key."""
    columns, _ = read_rows(path, strict=False)
    return ID_KEY in columns


def input_source(path: Path, target: str | None = None, unit: str = "") -> FilesSourceSpec:
    """The ``files`` source spec that reads an input (with the target as a property).

    Rows are named by the ``id`` column when there is one, else ``FILE#ROW``.
    """
    path = Path(path).resolve()
    properties = {target: {"column": target, "unit": unit}} if target else {}
    return FilesSourceSpec.model_validate(
        {
            "kind": "files",
            "name": "input",
            "path": path,
            "format": input_format(path),
            "id_key": ID_KEY if has_ids(path) else None,
            "properties": properties,
            "licence": "as given by the file's owner",
            "citation": [f"user file {path.name}"],
        }
    )
