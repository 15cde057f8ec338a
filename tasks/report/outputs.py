"""Write a campaign's output files: shortlist, full ranking, metrics and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, file_sha256

SHORTLIST_COLUMNS = ("rank", "id", "formula", "spacegroup")


def space_group(structure: Any) -> str:
    """International symbol and number of a structure's space group, e.g. ``Pm-3m (221)``.

    ``structure`` is a pymatgen Structure or its dict. The symmetry is found with a
    tolerance of 0.1 Å, as relaxed DFT cells are symmetric only to about that;
    ``unknown`` when spglib finds none.
    """
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if isinstance(structure, dict):
        structure = Structure.from_dict(structure)
    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
        return f"{analyzer.get_space_group_symbol()} ({analyzer.get_space_group_number()})"
    except Exception:  # spglib gives up on some cells; the shortlist still shows the rest
        return "unknown"


def with_space_groups(frame: pd.DataFrame, structures: dict[str, Any]) -> pd.DataFrame:
    """A copy of a candidate table with a ``spacegroup`` column after ``formula``.

    Meant for short tables (the shortlist, suggestions): each structure is analysed.
    """
    out = frame.copy()
    out.insert(
        list(out.columns).index("formula") + 1,
        "spacegroup",
        [space_group(structures[i]) for i in out["id"]],
    )
    return out


def shortlist_frame(ranking: pd.DataFrame, size: int) -> pd.DataFrame:
    """The ``size`` best-ranked candidates, with rank, id, formula (and space group) first."""
    first = [c for c in SHORTLIST_COLUMNS if c in ranking.columns]
    columns = first + [c for c in ranking.columns if c not in first]
    return ranking.loc[: size - 1, columns] if size > 0 else ranking.iloc[0:0][columns]


def write_outputs(
    output_dir: Path,
    ranking: pd.DataFrame,
    shortlist: pd.DataFrame,
    metrics: dict[str, Any],
    report_html: str,
    suggestions: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
) -> dict[str, dict[str, Any]]:
    """Write ``shortlist.csv``, ``ranking.csv``, ``metrics.json`` and ``report.html``.

    ``shortlist`` is the chosen candidates in shortlist order (with diversity they are not
    simply the top of the ranking); ``suggestions``, when given, go to ``suggestions.csv``;
    ``validation``, the held-out records ranked like candidates (predictions beside the
    reported values), to ``validation.csv``.

    Each file is written to a temporary name and renamed, so a file is either complete
    or absent.

    Returns
    -------
    dict
        For each file name: its ``path``, ``sha256`` and ``bytes``.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        "shortlist.csv": shortlist_frame(shortlist, len(shortlist)).to_csv(
            index=False, float_format="%.6g"
        ),
        "ranking.csv": ranking.to_csv(index=False, float_format="%.6g"),
        # NaN (e.g. R² of constant labels) is not JSON: it is written as null.
        "metrics.json": json.dumps(json.loads(canonical_json(metrics)), indent=2) + "\n",
        "report.html": report_html,
    }
    if suggestions is not None:
        texts["suggestions.csv"] = suggestions.to_csv(index=False, float_format="%.6g")
    if validation is not None:
        texts["validation.csv"] = validation.to_csv(index=False, float_format="%.6g")
    written: dict[str, dict[str, Any]] = {}
    for name, text in texts.items():
        path = output_dir / name
        write_atomically(path, text.encode("utf-8"))
        written[name] = {
            "path": str(path.resolve()),
            "sha256": file_sha256(path),
            "bytes": path.stat().st_size,
        }
    return written
