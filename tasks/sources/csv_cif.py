"""Read structures from a CSV file whose rows hold CIF text (e.g. the CMR perovskites)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError, SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder, failure, make_record
from matscreen.tasks.spec import CsvCifSourceSpec, PropertySpec


def parse_cif(text: str, where: str) -> Structure:
    """Parse one CIF text into a structure.

    Raises
    ------
    RecordError
        If the text is not a readable CIF or holds no structure; the message names ``where``.
    """
    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"{where}: empty CIF")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            structure = Structure.from_str(text, fmt="cif")
        # pymatgen's CIF reader raises many exception types for malformed text; any of them
        # means this one record is unreadable, which is recorded and does not stop the source.
        except Exception as exc:
            raise RecordError(f"{where}: unreadable CIF ({type(exc).__name__}: {exc})") from exc
    if len(structure) == 0:
        raise RecordError(f"{where}: CIF holds no atoms")
    return structure


def _property_value(row: pd.Series, name: str, prop: PropertySpec, where: str) -> float | None:
    values = []
    for column in prop.columns:
        raw = row[column]
        try:
            value = float(raw)
        except (TypeError, ValueError) as exc:
            raise RecordError(
                f"{where}: column {column!r} ({name}) is not a number: {raw!r}"
            ) from exc
        if not math.isnan(value):
            values.append(value)
    return max(values) if values else None


def iter_csv_cif(spec: CsvCifSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read a CSV-with-CIF source into structure records, one row at a time.

    A row whose CIF or property values cannot be read becomes a :class:`RecordFailure`;
    the other rows are still read. The snapshot is identified by the file's sha256.

    Raises
    ------
    SourceError
        If the file cannot be read as CSV or lacks a column the spec names.
    """
    path = Path(spec.path)
    try:
        frame = pd.read_csv(path, dtype={spec.id_column: str}, nrows=spec.limit)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(f"source {spec.name}: cannot read {path} as CSV: {exc}") from exc
    needed = {spec.id_column, spec.cif_column}
    needed.update(column for prop in spec.properties.values() for column in prop.columns)
    missing = sorted(needed - set(frame.columns))
    if missing:
        raise SourceError(
            f"source {spec.name}: {path} lacks column(s) {missing} "
            f"(it has {sorted(map(str, frame.columns))})"
        )
    snapshot.set_file(path)
    snapshot.query.update(
        {
            "id_column": spec.id_column,
            "cif_column": spec.cif_column,
            "properties": {k: v.model_dump(exclude_none=True) for k, v in spec.properties.items()},
            "limit": spec.limit,
        }
    )
    units = {name: prop.unit for name, prop in spec.properties.items()}
    seen: set[str] = set()
    for position, (_, row) in enumerate(frame.iterrows(), start=1):
        snapshot.n_documents += 1
        source_id = str(row[spec.id_column]).strip()
        where = f"{path.name} row {position} (id {source_id})"
        try:
            if source_id in seen or source_id in ("", "nan"):
                raise RecordError(f"{where}: missing or duplicate id")
            structure = parse_cif(row[spec.cif_column], where)
            properties = {
                name: _property_value(row, name, prop, where)
                for name, prop in spec.properties.items()
            }
            record = make_record(spec, source_id, position, structure, properties, units=units)
        except RecordError as exc:
            yield failure(spec, source_id, position, str(exc))
            continue
        seen.add(source_id)
        yield record
