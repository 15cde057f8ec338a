"""A run's subgraph as a W3C PROV document (PROV-JSON and PROV-O Turtle)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import prov.model as pm

from matscreen.catalog.export.subgraph import RunSubgraph, run_subgraph
from matscreen.catalog.nodes import Entity
from matscreen.catalog.store import Catalog
from matscreen.tasks.errors import ProvenanceRuleError
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import (
    canonical_json,
    content_hash,
    sha256_text,
    structure_hash,
)

NAMESPACE = "urn:matscreen:"
PREFIX = "matscreen"


# Attribute values longer than this (JSON text of lists and dicts included) are exported
# as a count and a sha256 instead: the catalog keeps the full value under the entity id.
_MAX_TEXT = 2000
_MAX_LISTED = 20
_NOT_IN_NAME = re.compile(r"[^\w.-]")


class ProvFiles(NamedTuple):
    """Paths of the PROV files written by :func:`export_prov`."""

    json: Path
    turtle: Path


def node_name(node_type: str, node_id: str) -> str:
    """The qualified name of a catalog node, e.g. ``matscreen:entity:<sha256>``."""
    return f"{PREFIX}:{node_type}:{node_id}"


def _flatten(name: str, value: Any) -> Iterator[tuple[str, Any]]:
    """(attribute, value) pairs for PROV: dicts become dotted names, long values references."""
    if value is None:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f"{name}.{key}", item)
    elif isinstance(value, list):
        if not value:
            return
        encoded = canonical_json(value)
        if len(value) > _MAX_LISTED or len(encoded) > _MAX_TEXT:
            yield f"{name}.count", len(value)
            yield f"{name}.sha256", content_hash(value)
        elif all(isinstance(v, str) for v in value):
            # PROV attributes may repeat: a short list of names or citations stays readable.
            yield from ((name, v) for v in value)
        else:
            yield name, encoded
    elif isinstance(value, str) and len(value) > _MAX_TEXT:
        yield f"{name}.length", len(value)
        yield f"{name}.sha256", sha256_text(value)
    else:
        yield name, value


def entity_summary(entity: Entity) -> dict[str, Any]:
    """An entity's attributes with bulky content replaced by a reference.

    A structure record's pymatgen structure becomes its ``structure_sha256`` (see
    :func:`matscreen.tasks.hashing.structure_hash`) and ``n_sites``.
    """
    attributes = dict(entity.attributes)
    structure = attributes.pop("structure", None)
    if isinstance(structure, dict):
        attributes["structure_sha256"] = structure_hash(structure)
        attributes["n_sites"] = len(structure.get("sites", []))
    return attributes


def _pairs(attributes: dict[str, Any]) -> list[tuple[str, Any]]:
    # Keys come from sources and specs; anything that cannot be part of an IRI becomes "_".
    return [
        (f"{PREFIX}:{_NOT_IN_NAME.sub('_', key)}", value)
        for name, item in attributes.items()
        for key, value in _flatten(name, item)
    ]


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def to_prov_document(subgraph: RunSubgraph) -> pm.ProvDocument:
    """Map a run's subgraph onto W3C PROV.

    Entities, activities and agents keep their catalog ids (see the module docstring);
    ``prov:type`` is the catalog kind (``matscreen:source_snapshot``), ``prov:label`` the
    name, and the key attributes follow as ``matscreen:`` attributes, bulky ones as
    references (:func:`entity_summary`). Each catalog edge becomes the PROV relation of
    the same name; an activity inside another names it as ``matscreen:partOf``.

    Raises
    ------
    ProvenanceRuleError
        If an edge's relation has no PROV counterpart.
    """
    doc = pm.ProvDocument()
    ns = doc.add_namespace(PREFIX, NAMESPACE)
    for agent in subgraph.agents.values():
        # A software agent's attributes are the package versions it ran with.
        software = agent.kind == "software"
        kind = pm.PROV["SoftwareAgent"] if software else pm.PROV["Person"]
        attributes: dict[str, Any] = {"versions" if software else "attributes": agent.attributes}
        doc.agent(
            node_name("agent", agent.id),
            [(pm.PROV_TYPE, kind), (pm.PROV_LABEL, agent.name), *_pairs(attributes)],
        )
    for activity in subgraph.activities:
        attributes = {
            "status": activity.status,
            "host": activity.host,
            "prefect_run_id": activity.prefect_run_id,
            "git_commit": activity.git_commit,
            "parameters": activity.parameters,
        }
        # Children share the run's software; repeat it only where it differs.
        if activity.id == subgraph.run.id or activity.software != subgraph.run.software:
            attributes["software"] = activity.software
        pairs: list[tuple[Any, Any]] = [
            (pm.PROV_TYPE, ns[activity.kind]),
            (pm.PROV_LABEL, activity.name),
            *_pairs(attributes),
        ]
        if activity.parent_id:
            pairs.append((ns["partOf"], ns[f"activity:{activity.parent_id}"]))
        doc.activity(
            node_name("activity", activity.id),
            _time(activity.started_at),
            _time(activity.ended_at),
            pairs,
        )
    for entity in subgraph.entities.values():
        doc.entity(
            node_name("entity", entity.id),
            [
                (pm.PROV_TYPE, ns[entity.kind]),
                (pm.PROV_LABEL, entity.name),
                (ns["created_at"], entity.created_at),
                *_pairs(entity_summary(entity)),
            ],
        )
    node_types = {
        **{a.id: "activity" for a in subgraph.activities},
        **{e: "entity" for e in subgraph.entities},
        **{a: "agent" for a in subgraph.agents},
    }
    relations: dict[str, Callable[..., Any]] = {
        "used": doc.used,
        "wasGeneratedBy": doc.wasGeneratedBy,
        "wasDerivedFrom": doc.wasDerivedFrom,
        "alternateOf": doc.alternateOf,
        "wasAssociatedWith": doc.wasAssociatedWith,
        "wasAttributedTo": doc.wasAttributedTo,
    }
    for edge in subgraph.edges:
        if edge.relation not in relations:
            raise ProvenanceRuleError(f"relation {edge.relation!r} of {edge} has no PROV form")
        relations[edge.relation](
            node_name(node_types[edge.subject_id], edge.subject_id),
            node_name(node_types[edge.object_id], edge.object_id),
        )
    return doc


def export_prov(
    catalog: Catalog, run_id: str, out_dir: Path, subgraph: RunSubgraph | None = None
) -> ProvFiles:
    """Write a run's provenance as PROV-JSON (``prov.json``) and PROV-O Turtle (``prov.ttl``).

    Parameters
    ----------
    catalog, run_id
        The run to export.
    out_dir
        Folder to write into (created if missing).
    subgraph
        The run's subgraph if already read (:func:`run_subgraph`).

    Raises
    ------
    NotFoundError
        If the run is not in the catalog.
    """
    graph = subgraph or run_subgraph(catalog, run_id)
    doc = to_prov_document(graph)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = ProvFiles(out_dir / "prov.json", out_dir / "prov.ttl")
    # Without a destination, ``serialize`` returns the text.
    as_json = str(doc.serialize(format="json", indent=1))
    write_atomically(paths.json, as_json.encode("utf-8"))
    turtle = str(doc.serialize(format="rdf", rdf_format="turtle"))
    write_atomically(paths.turtle, turtle.encode("utf-8"))
    return paths


def entity_urn(entity_id: str) -> str:
    """The URN of a catalog entity, e.g. ``urn:matscreen:entity:<sha256>``."""
    return f"{NAMESPACE}entity:{entity_id}"
