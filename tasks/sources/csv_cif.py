"""Read structures from a CSV file whose rows hold CIF text (e.g. the CMR perovskites)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.base import Item, SnapshotBuilder
from matscreen.tasks.sources.rows import (
    UNREADABLE,
    csv_rows,
    open_text,
    parse_cif,
    records_from_rows,
    repeated_columns,
)
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
        If the file cannot be opened, read or decoded as UTF-8 (naming the last row read),
        or its header lacks a column the spec names or repeats one.
    """
    path = Path(spec.path)
    read = 0

    def counted(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> Iterator[Any]:
        nonlocal read
        for position, row in rows:
            read = position  # the position read last, for the message of a failed read
            yield position, row

    try:
        with open_text(path) as handle:
            header, rows = csv_rows(handle)
            _check_header(spec, path, header)
            snapshot.set_file(path)
            snapshot.query.update(
                {
                    "id_column": spec.id_column,
                    "cif_column": spec.cif_column,
                    "properties": {
                        k: v.model_dump(exclude_none=True) for k, v in spec.properties.items()
                    },
                    "limit": spec.limit,
                }
            )
            yield from records_from_rows(
                spec,
                counted(islice(rows, spec.limit)),
                path.name,
                spec.id_column,
                lambda row, where: parse_cif(row[spec.cif_column], where),
            )
    except (*UNREADABLE, UnicodeDecodeError) as exc:
        where = f"after row {read}" if read else "in its header"
        raise SourceError(f"source {spec.name}: cannot read {path} as CSV {where}: {exc}") from exc


def _check_header(spec: CsvCifSourceSpec, path: Path, header: list[str]) -> None:
    needed = {spec.id_column, spec.cif_column}
    needed.update(column for prop in spec.properties.values() for column in prop.columns)
    missing = sorted(needed - set(header))
    if missing:
        raise SourceError(
            f"source {spec.name}: {path} lacks column(s) {missing} (it has {sorted(header)})"
        )
    twice = repeated_columns(header)
    if twice:
        raise SourceError(f"source {spec.name}: {path} has column(s) {twice} more than once")
