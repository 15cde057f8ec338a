"""Read structures from a CSV file whose rows hold CIF text (e.g. the CMR perovskites)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder
from matscreen.tasks.sources.rows import parse_cif, records_from_rows
from matscreen.tasks.spec import CsvCifSourceSpec


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
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    yield from records_from_rows(
        spec,
        enumerate(rows, start=1),
        path.name,
        spec.id_column,
        lambda row, where: parse_cif(row[spec.cif_column], where),
    )
