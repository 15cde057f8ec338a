"""Hand the shortlist over to DFT: one CIF and one POSCAR per candidate, and JSON lines.

:func:`write_structures` fills ``<output folder>/structures/`` with

- ``<rank>_<slug>.cif`` and ``<rank>_<slug>.vasp`` (POSCAR format) per shortlisted candidate;
- ``shortlist_structures.jsonl``: one line per candidate with its pymatgen structure dict,
  predictions with intervals and scores, ready for an atomate2/jobflow workflow;
- ``README.txt``: what the files are and how to load them.

The folder is built beside the old one and swapped in by renames, so a re-run never leaves
files of an earlier shortlist behind and a reader never sees half a hand-off.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import tempfile
import unicodedata
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser, CifWriter
from pymatgen.io.vasp import Poscar

from matscreen.tasks.errors import MatscreenError, RecordError
from matscreen.tasks.files import write_atomically

STRUCTURES_DIR = "structures"
JSONL_NAME = "shortlist_structures.jsonl"
README_NAME = "README.txt"

#: Symmetry search tolerance (Å) of the CIF files; the symmetrized CIF is kept only if the
#: cell it regenerates puts every atom within :data:`EXACT_TOLERANCE` (Å) of the original.
SYMPREC = 1e-3
EXACT_TOLERANCE = 1e-4

_MAX_SLUG = 80
_NOT_PORTABLE = re.compile(r"[^A-Za-z0-9._-]+")
# Columns that become fixed keys of a JSON line rather than entries of its ``columns``.
_FIXED = ("id", "rank", "formula", "p_success")
_INTERVAL = ("lower", "upper")


class OutputFolderError(MatscreenError):
    """The run's output folder cannot take the hand-off (a file stands in its place, …)."""


# -- names ------------------------------------------------------------------------------------
def slug(candidate_id: str) -> str:
    """A portable file name part for a candidate id: ASCII letters, digits, ``.``, ``_``, ``-``.

    ``decorations:perovskite_ABX3:Sr-Ti-O3`` becomes ``decorations-perovskite_ABX3-Sr-Ti-O3``;
    accents are dropped (``é`` → ``e``), the result is at most 80 characters long and never
    starts with a dot.
    """
    ascii_id = unicodedata.normalize("NFKD", candidate_id).encode("ascii", "ignore").decode()
    text = _NOT_PORTABLE.sub("-", ascii_id).strip(".-")[:_MAX_SLUG].rstrip(".-")
    return text or "candidate"


def file_stems(ranks: list[int], candidate_ids: list[str]) -> list[str]:
    """Unique file stems ``<rank>_<slug>`` (rank zero-padded to at least 3 digits).

    Two ids with one slug (``a:b`` and ``a/b``) get the first 8 hex digits of their id's
    sha256 appended, so names stay unique even on case-insensitive file systems.

    Raises
    ------
    RecordError
        If a candidate id occurs twice.
    """
    seen: set[str] = set()
    for candidate_id in candidate_ids:
        if candidate_id in seen:
            raise RecordError(f"candidate {candidate_id} occurs twice in the shortlist")
        seen.add(candidate_id)
    width = max(3, *(len(str(r)) for r in ranks)) if ranks else 3
    stems = [f"{r:0{width}d}_{slug(i)}" for r, i in zip(ranks, candidate_ids, strict=True)]
    folded = [s.casefold() for s in stems]
    return [
        f"{stem}-{hashlib.sha256(i.encode()).hexdigest()[:8]}" if folded.count(key) > 1 else stem
        for stem, key, i in zip(stems, folded, candidate_ids, strict=True)
    ]


def _ranks(shortlist: pd.DataFrame) -> list[int]:
    """Each row's rank; the 1-based shortlist position where there is no rank."""
    if "rank" not in shortlist.columns:
        return list(range(1, len(shortlist) + 1))
    ranks = []
    for position, value in enumerate(shortlist["rank"], 1):
        number = _plain(value)
        ok = isinstance(number, (int, float)) and not isinstance(number, bool)
        ranks.append(int(number) if ok and float(number).is_integer() else position)
    return ranks


# -- structures -------------------------------------------------------------------------------
def read_structure(candidate_id: str, value: Any) -> Structure:
    """The pymatgen Structure of a candidate's structure dict, checked for a DFT hand-off.

    Raises
    ------
    RecordError
        If ``value`` is not a readable structure dict, has no sites, partial occupancies,
        non-finite coordinates or a degenerate cell; the message names the candidate.
    """
    if isinstance(value, Structure):
        structure = value
    elif not isinstance(value, Mapping) or "lattice" not in value or "sites" not in value:
        raise RecordError(f"candidate {candidate_id}: not a pymatgen structure dict")
    else:
        try:
            structure = Structure.from_dict(dict(value))
        # A malformed dict fails deep inside pymatgen with any of these.
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise RecordError(
                f"candidate {candidate_id}: unreadable structure dict ({exc!r})"
            ) from exc
    if len(structure) == 0:
        raise RecordError(f"candidate {candidate_id}: structure holds no sites")
    if not structure.is_ordered:
        raise RecordError(
            f"candidate {candidate_id}: disordered structure (partial occupancy); "
            "DFT needs one species per site"
        )
    matrix = structure.lattice.matrix
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        raise RecordError(f"candidate {candidate_id}: structure has non-finite numbers")
    if not abs(structure.lattice.volume) > 1e-6:
        raise RecordError(f"candidate {candidate_id}: structure has a cell of zero volume")
    return structure


def _same_cell(structure: Structure, other: Structure) -> bool:
    """True if ``other`` holds the atoms of ``structure`` within :data:`EXACT_TOLERANCE`."""
    if len(other) != len(structure) or not np.allclose(
        structure.lattice.parameters, other.lattice.parameters, rtol=1e-7, atol=1e-6
    ):
        return False
    distances = structure.lattice.get_all_distances(structure.frac_coords, other.frac_coords)
    species = [site.species_string for site in structure]
    others = [site.species_string for site in other]
    used: set[int] = set()
    for i, row in enumerate(distances):
        match = next(
            (
                j
                for j in np.argsort(row, kind="stable")
                if row[j] <= EXACT_TOLERANCE and j not in used and others[j] == species[i]
            ),
            None,
        )
        if match is None:
            return False
        used.add(int(match))
    return True


def cif_text(structure: Structure) -> str:
    """A CIF of the cell as given, with its space group and symmetry operations when exact.

    The symmetry is searched with :data:`SYMPREC` and the cell is not refined (no change to
    the conventional setting). If reading the symmetrized CIF back would move an atom by
    more than :data:`EXACT_TOLERANCE` Å, the CIF lists every atom in P1 instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-unique labels, parser notes
        plain = str(CifWriter(structure))
        try:
            symmetric = str(CifWriter(structure, symprec=SYMPREC, refine_struct=False))
            back = CifParser.from_str(symmetric).parse_structures(primitive=False)
        except Exception:  # spglib or the parser give up on some cells: P1 is still right
            return plain
    return symmetric if len(back) == 1 and _same_cell(structure, back[0]) else plain


def poscar_text(structure: Structure, comment: str) -> str:
    """The cell in VASP's POSCAR format, sites in their given order, ``comment`` on line 1."""
    one_line = " ".join(comment.split())
    return Poscar(structure, comment=one_line).get_str()


# -- JSON lines -------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars to Python, NaN/inf/NA to None, containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def predictions(row: Mapping[str, Any], units: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``{property: {value, lower, upper[, unit]}}`` from a row's pred_/lower_/upper_ columns.

    ``lower`` and ``upper`` are None where the row has no interval; ``unit`` is there when
    ``units`` knows the property.
    """
    found: dict[str, dict[str, Any]] = {}
    for column, value in row.items():
        if not str(column).startswith("pred_"):
            continue
        name = str(column)[len("pred_") :]
        entry = {"value": _plain(value)}
        entry.update({side: _plain(row.get(f"{side}_{name}")) for side in _INTERVAL})
        if name in units:
            entry["unit"] = units[name]
        found[name] = entry
    return found


def shortlist_line(
    row: Mapping[str, Any],
    rank: int,
    structure: Structure,
    files: Mapping[str, str],
    catalog_id: str | None,
    units: Mapping[str, str],
) -> dict[str, Any]:
    """One candidate's JSON line (see :func:`write_structures` for its keys)."""
    found = predictions(row, units)
    consumed = set(_FIXED) | {
        f"{prefix}_{name}" for name in found for prefix in ("pred", *_INTERVAL)
    }
    formula = _plain(row.get("formula")) or structure.composition.reduced_formula
    return {
        "rank": rank,
        "candidate_id": str(row["id"]),
        "catalog_id": catalog_id,
        "formula": formula,
        "predictions": found,
        "p_success": _plain(row.get("p_success")),
        "columns": {str(k): _plain(v) for k, v in row.items() if k not in consumed},
        "files": dict(files),
        "structure": structure.as_dict(),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def readme_text(count: int) -> str:
    """The ``README.txt`` of the structures folder."""
    return f"""\
Structures of the shortlist ({count} candidates), for DFT
=========================================================

NNN_<candidate>.cif    the candidate's cell as screened (CIF 1.1). It carries the space group
                       and symmetry operations when they regenerate the cell exactly
                       (within {EXACT_TOLERANCE} A), otherwise every atom in P1.
NNN_<candidate>.vasp   the same cell in VASP's POSCAR format (Cartesian cell, fractional
                       coordinates, sites in the order of the CIF's source).
                       NNN is the candidate's rank; ':' and '/' of the id became '-'.
{JSONL_NAME}
                       one JSON object per line, in shortlist order, with keys
                       rank, candidate_id, catalog_id (the provenance catalog's entity id of
                       the structure record), formula, predictions ({{property: {{value,
                       lower, upper, unit}}}}), p_success, columns (every other shortlist
                       column), files (the CIF and POSCAR names in this folder) and
                       structure (pymatgen Structure.as_dict()).

Load with pymatgen:

    import json
    from pymatgen.core import Structure

    with open("{JSONL_NAME}") as handle:
        lines = [json.loads(text) for text in handle]
    structures = {{line["candidate_id"]: Structure.from_dict(line["structure"]) for line in lines}}

Feed into atomate2 (e.g. a relaxation and band structure per candidate):

    from atomate2.vasp.flows.core import RelaxBandStructureMaker
    from jobflow import run_locally

    for line in lines:
        flow = RelaxBandStructureMaker().make(Structure.from_dict(line["structure"]))
        flow.update_metadata({{"candidate_id": line["candidate_id"], "rank": line["rank"]}})
        run_locally(flow, create_folders=True)

Single files: Structure.from_file("001_<candidate>.cif") or ("001_<candidate>.vasp").
The whole folder is rewritten by each run: files of an earlier shortlist do not remain.
"""


# -- the folder -------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prepare(output_dir: Path) -> Path:
    """Create the output folder if needed; return where the structures folder goes.

    Raises
    ------
    OutputFolderError
        If the output folder is a file or cannot be created, or ``structures`` in it is a
        file or a symbolic link (not replaced: matscreen did not make it).
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputFolderError(f"output folder {output_dir} is a file, not a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"cannot create output folder {output_dir}: {exc}") from exc
    target = output_dir / STRUCTURES_DIR
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputFolderError(
            f"{target} exists and is not a folder (a file or a link); not replacing it"
        )
    return target


def _swap_in(new: Path, target: Path) -> None:
    """Rename folder ``new`` to ``target``, removing what ``target`` held before.

    The old folder is first renamed aside, then ``new`` takes its name: a reader sees the
    old set of files or the new one, never a mix (for an instant, none). If the second
    rename fails, the old folder is put back.
    """
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{secrets.token_hex(6)}")
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    _fsync_folder(target.parent)
    # This run's old folder, and any left by a run that stopped between the two renames.
    for leftover in target.parent.glob(f".{target.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def write_structures(
    output_dir: Path,
    shortlist: pd.DataFrame,
    structures: Mapping[str, Any],
    catalog_ids: Mapping[str, str] | None = None,
    units: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write the shortlist's structures for DFT into ``output_dir/structures/``.

    Parameters
    ----------
    output_dir
        The run's output folder (created if missing).
    shortlist
        The shortlisted candidates in shortlist order; it needs an ``id`` column. ``rank``
        names the files (the row position stands in without it), ``formula``,
        ``pred_<p>``/``lower_<p>``/``upper_<p>`` and ``p_success`` become keys of the JSON
        lines, every other column goes to their ``columns``.
    structures
        Candidate id → pymatgen Structure dict (as structure records store it).
    catalog_ids
        Candidate id → catalog entity id of its structure record, written as ``catalog_id``
        (None for ids it lacks).
    units
        Property → unit, added to the predictions (``spec.units()``).

    Returns
    -------
    dict
        For each written file, by its name relative to ``output_dir`` (e.g.
        ``structures/001_mp-5229.cif``): its ``path``, ``sha256`` and ``bytes``, the form
        of :func:`matscreen.tasks.report.outputs.write_outputs`.

    Raises
    ------
    RecordError
        If a candidate has no structure in ``structures``, its structure cannot be read
        (or is empty, disordered, degenerate) or an id occurs twice; nothing is written.
    OutputFolderError
        If ``output_dir`` is a file or cannot be created, or its ``structures`` is a file.
    ValueError
        If ``shortlist`` has no ``id`` column.
    """
    if "id" not in shortlist.columns:
        raise ValueError(f"shortlist has no 'id' column (columns: {list(shortlist.columns)})")
    output_dir = Path(output_dir)
    units = dict(units or {})
    catalog_ids = catalog_ids or {}
    rows = [{str(k): v for k, v in row.items()} for row in shortlist.to_dict("records")]
    ids = [str(row["id"]) for row in rows]
    ranks = _ranks(shortlist)
    stems = file_stems(ranks, ids)

    # Every structure is read before anything is written: a bad one leaves the folder as it was.
    cells = []
    for candidate_id in ids:
        if candidate_id not in structures:
            raise RecordError(f"candidate {candidate_id} of the shortlist has no structure")
        cells.append(read_structure(candidate_id, structures[candidate_id]))

    texts: dict[str, str] = {}
    lines = []
    for row, rank, stem, cell in zip(rows, ranks, stems, cells, strict=True):
        candidate_id = str(row["id"])
        files = {"cif": f"{stem}.cif", "poscar": f"{stem}.vasp"}
        texts[files["cif"]] = cif_text(cell)
        texts[files["poscar"]] = poscar_text(cell, f"{candidate_id} rank {rank}")
        line = shortlist_line(row, rank, cell, files, catalog_ids.get(candidate_id), units)
        try:
            lines.append(json.dumps(line, allow_nan=False, default=_json_default))
        except (TypeError, ValueError) as exc:
            raise RecordError(f"candidate {candidate_id}: not expressible as JSON ({exc})") from exc
    texts[JSONL_NAME] = "".join(f"{text}\n" for text in lines)
    texts[README_NAME] = readme_text(len(rows))

    target = _prepare(output_dir)
    new = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{STRUCTURES_DIR}.new-"))
    try:
        os.chmod(new, 0o777 & ~_umask())
        for name, text in texts.items():
            write_atomically(new / name, text.encode("utf-8"))
        _fsync_folder(new)
        _swap_in(new, target)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)

    written: dict[str, dict[str, Any]] = {}
    for name, text in texts.items():
        data = text.encode("utf-8")
        written[f"{STRUCTURES_DIR}/{name}"] = {
            "path": str((target / name).resolve()),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
    return written
