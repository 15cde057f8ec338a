"""The catalog's three kinds of record: entities, activities and the edges between them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from matscreen.catalog.liveness import shown_status
from matscreen.catalog.rules import ENTITY_KINDS
from matscreen.tasks.errors import ProvenanceRuleError
from matscreen.tasks.hashing import canonical_json, fast_canonical_json, sha256_text


@dataclass(frozen=True)
class Entity:
    """An immutable, content-addressed catalog entity.

    Build new ones with :meth:`Entity.new`, which derives the id from kind, name and attributes.
    """

    id: str
    kind: str
    name: str
    attributes: dict[str, Any]
    created_at: str = ""

    @classmethod
    def new(
        cls, kind: str, name: str, attributes: dict[str, Any], text: str | None = None
    ) -> Entity:
        """Create an entity whose id is the sha256 of its canonical content.

        ``text``, when given, is ``fast_canonical_json(attributes)`` made beforehand (by
        the process that read a record, for instance), which is then not made again.

        Raises
        ------
        ProvenanceRuleError
            If ``kind`` is not one of :data:`ENTITY_KINDS`.
        """
        if kind not in ENTITY_KINDS:
            raise ProvenanceRuleError(f"unknown entity kind {kind!r} for entity {name!r}")
        if text is None:
            text = fast_canonical_json(attributes)
        if text is None:
            text = canonical_json(attributes)
            attributes = json.loads(text)  # as stored: numpy scalars, sets, NaN made plain
        # The canonical JSON of {"attributes": …, "kind": …, "name": …} (keys sorted),
        # built around the attributes' text instead of serializing them again.
        whole = f'{{"attributes":{text},"kind":{json.dumps(kind)},"name":{json.dumps(name)}}}'
        entity = cls(id=sha256_text(whole), kind=kind, name=name, attributes=attributes)
        object.__setattr__(entity, "_text", text)
        return entity

    @property
    def attributes_json(self) -> str:
        """The canonical JSON of the attributes (kept from :meth:`new` when built there)."""
        return self.__dict__.get("_text") or canonical_json(self.attributes)


@dataclass(frozen=True)
class Activity:
    """A flow or task run: what ran, when, where, with which software and parameters."""

    id: str
    kind: str
    name: str
    started_at: str
    ended_at: str | None = None
    status: str = "running"
    prefect_run_id: str | None = None
    parent_id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    software: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None


@dataclass(frozen=True)
class Edge:
    """One PROV relation, read "subject relation object" (e.g. entity wasDerivedFrom entity)."""

    relation: str
    subject_id: str
    object_id: str


def entity_from_row(row: Any) -> Entity:
    """The entity of a row of the ``entities`` table."""
    return Entity(
        id=row.id,
        kind=row.kind,
        name=row.name,
        attributes=json.loads(row.attributes),
        created_at=row.created_at,
    )


def activity_from_row(row: Any) -> Activity:
    """The activity of a row of the ``activities`` table (a run whose process died shows
    as crashed)."""
    parameters = json.loads(row.parameters)
    return Activity(
        id=row.id,
        kind=row.kind,
        name=row.name,
        started_at=row.started_at,
        ended_at=row.ended_at,
        status=shown_status(row.status, row.host, parameters),
        prefect_run_id=row.prefect_run_id,
        parent_id=row.parent_id,
        parameters=parameters,
        host=row.host,
        software=json.loads(row.software),
        git_commit=row.git_commit,
    )
