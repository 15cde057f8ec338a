"""Materials Project summary documents made into structure records."""

from __future__ import annotations

from typing import Any

from pymatgen.core import Structure

from matscreen.tasks.errors import RecordError
from matscreen.tasks.hashing import structure_hash
from matscreen.tasks.sources.base import Item, failure, make_record
from matscreen.tasks.spec import MPSourceSpec


def summary_record(spec: MPSourceSpec, document: Any, row: int, seen: dict[str, int]) -> Item:
    """Turn one summary document into a record, or a failure naming it."""
    if not isinstance(document, dict):
        return failure(spec, f"document-{row}", row, f"document {row} is not a JSON object")
    material_id = document.get("material_id")
    raw = document.get("structure")
    extra: dict[str, Any] = {}
    if material_id:
        source_id = str(material_id)
    else:
        try:
            source_id = "struct-" + structure_hash(raw)[:16]  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return failure(
                spec, f"document-{row}", row, f"document {row}: no material_id and no structure"
            )
        extra["id_origin"] = "structure_hash"
    where = f"{spec.name}:{source_id} (document {row})"
    if source_id in seen:
        reason = (
            "duplicate material_id"
            if material_id
            else "same structure and no material_id to tell them apart"
        )
        return failure(spec, source_id, row, f"{where}: {reason} as document {seen[source_id]}")
    seen[source_id] = row
    try:
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: no structure")
        try:
            structure = Structure.from_dict(raw)
        # pymatgen raises many exception types for a malformed structure dict; any of them
        # means this one document is unusable, which is recorded and does not stop the read.
        except Exception as exc:
            raise RecordError(
                f"{where}: structure cannot be built ({type(exc).__name__}: {exc})"
            ) from exc
        properties = {name: document.get(name) for name in spec.properties}
        return make_record(
            spec, source_id, row, structure, properties, extra={**extra, **_extra(document)}
        )
    except RecordError as exc:
        return failure(spec, source_id, row, str(exc))


def _extra(document: dict[str, Any]) -> dict[str, Any]:
    """Metadata kept with a record: formula, space group, update time, deprecation flag."""
    extra: dict[str, Any] = {}
    if document.get("formula_pretty"):
        extra["formula_pretty"] = str(document["formula_pretty"])
    symmetry = document.get("symmetry")
    if isinstance(symmetry, dict):
        if symmetry.get("symbol"):
            extra["spacegroup_symbol"] = str(symmetry["symbol"])
        number = symmetry.get("number")
        if isinstance(number, int) and not isinstance(number, bool):
            extra["spacegroup_number"] = number
    updated = document.get("last_updated")
    if isinstance(updated, dict):  # a datetime in monty's JSON form
        updated = updated.get("string")
    if updated:
        extra["last_updated"] = str(updated)
    if document.get("deprecated") is not None:
        extra["deprecated"] = bool(document["deprecated"])
    return extra
