"""Canonical serialization and content hashes.

Entities, feature rows and artifacts are addressed by the sha256 of a canonical form, so
equal content always gets the same id, on any machine and in any run.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def _normalize(value: Any) -> Any:
    """Turn numpy scalars, tuples, sets and paths into plain JSON types, recursively."""
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_normalize(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return _normalize(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


#: Types json.dumps writes as they are (no container inside to check).
_LEAVES = frozenset({str, float, int, bool, type(None)})
_NESTED = (dict, list, tuple)


def _plain(value: Any) -> bool:
    """Whether every dict in ``value`` has only string keys (json.dumps then writes what
    :func:`canonical_json` writes, for values it accepts at all).

    A walk with an explicit stack, which skips the scalars by their exact type: this runs
    on every entity stored, a million times in a large screen.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key in item:
                if type(key) is not str:
                    return False
            item = item.values()
        elif not isinstance(item, _NESTED):
            continue
        for inner in item:
            if type(inner) not in _LEAVES and isinstance(inner, _NESTED):
                stack.append(inner)
    return True


def fast_canonical_json(value: Any) -> str | None:
    """:func:`canonical_json` of plain data (string keys; lists, tuples, strings, finite
    floats, ints, booleans, None) written by json.dumps directly, without the walk that
    normalizes numpy scalars, sets, paths and NaN; None when ``value`` is not plain data."""
    if not _plain(value):
        return None
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def canonical_json(value: Any) -> str:
    """Serialize ``value`` as canonical JSON: sorted keys, no whitespace, NaN as null.

    Parameters
    ----------
    value
        Any combination of dicts, lists, strings, numbers, booleans, None and numpy scalars.

    Returns
    -------
    str
        The canonical JSON text.

    Raises
    ------
    TypeError
        If ``value`` holds an object JSON cannot represent.
    """
    fast = fast_canonical_json(value)  # plain data needs no normalizing walk
    if fast is not None:
        return fast
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def sha256_text(text: str) -> str:
    """Return the hex sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_hash(value: Any) -> str:
    """Return the hex sha256 of the canonical JSON of ``value``."""
    return sha256_text(canonical_json(value))


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's bytes, read in chunks.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def code_sha256(*folders: Path) -> str | None:
    """The sha256 of the source of every module under the package ``folders`` (their paths
    relative to each folder, and their bytes, in path order): what results computed by that
    code depend on. None if a folder is not a package with its sources (an install without
    them, a zip import) or a module cannot be read."""
    digest = hashlib.sha256()
    try:
        for folder in folders:
            if not (Path(folder) / "__init__.py").is_file():
                return None
            for path in sorted(Path(folder).rglob("*.py")):
                name = path.relative_to(folder).as_posix()
                digest.update(f"{Path(folder).name}/{name}\n".encode() + path.read_bytes() + b"\n")
    except OSError:
        return None
    return digest.hexdigest()


def structure_hash(structure: dict[str, Any]) -> str:
    """The sha256 of a structure's physical content (lattice, species, positions, charge).

    Labels and site properties are left out, and numbers are rounded to 1e-6 (Å and
    fractional coordinates), so the same crystal read from two sources gets one hash.
    """
    lattice = [[round(x, 6) for x in row] for row in structure["lattice"]["matrix"]]
    sites = [
        [
            sorted(
                (sp["element"], sp.get("oxidation_state"), round(sp.get("occu", 1.0), 6))
                for sp in site["species"]
            ),
            [round(x, 6) for x in site["abc"]],
        ]
        for site in structure["sites"]
    ]
    content = {"lattice": lattice, "sites": sites, "charge": structure.get("charge") or 0}
    try:
        # The content is plain JSON already (fixed string keys, lists, floats, strings):
        # json.dumps writes exactly what canonical_json would, without its walk. Anything
        # it cannot write as-is (NaN, a numpy integer) takes the canonical path.
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        text = canonical_json(content)
    return sha256_text(text)
