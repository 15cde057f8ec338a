"""Read structures from a CSV file whose rows hold CIF text (e.g. the CMR perovskites)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder
from matscreen.tasks.sources.rows import csv_rows, parse_cif, records_from_rows
from matscreen.tasks.spec import CsvCifSourceSpec


def iter_csv_cif(spec: CsvCifSourceSpec, snapshot: SnapshotBuilder) -> Iterator[Item]:
    """Read a CSV-with-CIF source into structure records, one row at a time.

    The file (UTF-8, gzipped when its name ends in ``.gz``) is read as it goes, by the
    CSV reader the ``files`` source uses: a row whose CIF or property values cannot be
    read, or that has another field count than the header, becomes a
    :class:`RecordFailure`, and the other rows are still read. The snapshot is identified
    by the file's sha256.

    Raises
    ------
    SourceError
        If the file cannot be opened or is not UTF-8 text, or its header lacks a column the
        spec names or repeats one.
    """
    path = Path(spec.path)
    try:
        raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    except OSError as exc:
        raise SourceError(f"source {spec.name}: cannot read {path}: {exc}") from exc
    with io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        try:
            header, rows = csv_rows(handle)
            yield from _records(spec, snapshot, path, header, rows)
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"source {spec.name}: cannot read {path} as CSV: {exc}") from exc


def _records(
    spec: CsvCifSourceSpec, snapshot: SnapshotBuilder, path: Path, header: list[str], rows: Any
) -> Iterator[Item]:
    needed = {spec.id_column, spec.cif_column}
    needed.update(column for prop in spec.properties.values() for column in prop.columns)
    missing = sorted(needed - set(header))
    if missing:
        raise SourceError(
            f"source {spec.name}: {path} lacks column(s) {missing} (it has {sorted(header)})"
        )
    twice = sorted(c for c in needed if header.count(c) > 1)
    if twice:
        raise SourceError(f"source {spec.name}: {path} has column(s) {twice} more than once")
    snapshot.set_file(path)
    snapshot.query.update(
        {
            "id_column": spec.id_column,
            "cif_column": spec.cif_column,
            "properties": {k: v.model_dump(exclude_none=True) for k, v in spec.properties.items()},
            "limit": spec.limit,
        }
    )
    yield from records_from_rows(
        spec,
        islice(rows, spec.limit),
        path.name,
        spec.id_column,
        lambda row, where: parse_cif(row[spec.cif_column], where),
    )
