"""Write a campaign's output files: shortlist, full ranking, metrics and report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from matscreen.tasks.hashing import file_sha256

SHORTLIST_COLUMNS = ("rank", "id", "formula")


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    written = False
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        written = True
    finally:
        if not written:
            Path(tmp).unlink(missing_ok=True)


def shortlist_frame(ranking: pd.DataFrame, size: int) -> pd.DataFrame:
    """The ``size`` best-ranked candidates, with rank, id and formula first."""
    columns = list(SHORTLIST_COLUMNS) + [c for c in ranking.columns if c not in SHORTLIST_COLUMNS]
    return ranking.loc[: size - 1, columns] if size > 0 else ranking.iloc[0:0][columns]


def write_outputs(
    output_dir: Path,
    ranking: pd.DataFrame,
    shortlist_size: int,
    metrics: dict[str, Any],
    report_html: str,
) -> dict[str, dict[str, Any]]:
    """Write ``shortlist.csv``, ``ranking.csv``, ``metrics.json`` and ``report.html``.

    Each file is written to a temporary name and renamed, so a file is either complete
    or absent.

    Returns
    -------
    dict
        For each file name: its ``path``, ``sha256`` and ``bytes``.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        "shortlist.csv": shortlist_frame(ranking, shortlist_size).to_csv(
            index=False, float_format="%.6g"
        ),
        "ranking.csv": ranking.to_csv(index=False, float_format="%.6g"),
        "metrics.json": json.dumps(metrics, indent=2, sort_keys=True) + "\n",
        "report.html": report_html,
    }
    written: dict[str, dict[str, Any]] = {}
    for name, text in texts.items():
        path = output_dir / name
        _write_atomically(path, text)
        written[name] = {
            "path": str(path.resolve()),
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
        }
    return written
