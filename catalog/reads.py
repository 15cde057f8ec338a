"""Reading the catalog: entities, activities and edges by id, kind, name or run.

:class:`~matscreen.catalog.store.Catalog` inherits these; they only read, so they also
serve a catalog opened read-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, union

from matscreen.catalog import schema
from matscreen.catalog.nodes import Activity, Edge, Entity, activity_from_row, entity_from_row
from matscreen.tasks.errors import NotFoundError
from matscreen.tasks.secrets import mask_url

#: Ids per ``IN (...)`` list of a query.
CHUNK = 500


class CatalogReads:
    """The read half of the catalog (needs ``self.engine`` and ``self.url``)."""

    engine: Any
    url: str

    @property
    def url_for_display(self) -> str:
        """The catalog URL with any password masked."""
        return mask_url(self.url)

    def get_entity(self, entity_id: str) -> Entity:
        """Return the entity with this id (or a unique id prefix of at least 8 characters).

        Raises
        ------
        NotFoundError
            If no entity, or more than one, matches.
        """
        table = schema.entities
        with self.engine.connect() as conn:
            if len(entity_id) == 64:
                rows = conn.execute(select(table).where(table.c.id == entity_id)).all()
            elif len(entity_id) >= 8:
                rows = conn.execute(
                    select(table).where(table.c.id.like(f"{entity_id}%")).limit(2)
                ).all()
            else:
                rows = []
        if len(rows) != 1:
            what = "no" if not rows else "more than one"
            raise NotFoundError(f"{what} entity with id {entity_id!r} in {self.url_for_display}")
        return entity_from_row(rows[0])

    def get_entities(self, ids: Sequence[str]) -> list[Entity]:
        """Return the stored entities among ``ids`` (in no particular order)."""
        table = schema.entities
        found: list[Entity] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                found += [
                    entity_from_row(row)
                    for row in conn.execute(select(table).where(table.c.id.in_(chunk)))
                ]
        return found

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among ``ids`` that the catalog holds (an entity or an activity is not
        read, only looked up)."""
        table = schema.entities
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                found.update(
                    conn.execute(select(table.c.id).where(table.c.id.in_(chunk))).scalars()
                )
        return found

    def find_entities(
        self, kind: str, name: str | None = None, name_endswith: str | None = None
    ) -> list[Entity]:
        """Return entities of ``kind``, optionally with an exact name or a name ending."""
        table = schema.entities
        query = select(table).where(table.c.kind == kind)
        if name is not None:
            query = query.where(table.c.name == name)
        if name_endswith is not None:
            query = query.where(table.c.name.endswith(name_endswith, autoescape=True))
        with self.engine.connect() as conn:
            return [entity_from_row(row) for row in conn.execute(query.order_by(table.c.name))]

    def run_entities(self, run_id: str, kinds: Sequence[str] | None = None) -> list[Entity]:
        """Entities that a run's steps generated or used (of ``kinds``, if given), by name.

        A run that arrived at content already stored (a re-run) *used* that entity, so
        both relations count: the result is what the run read and produced.
        """
        edges, activities, entities = schema.edges, schema.activities, schema.entities
        steps = select(activities.c.id).where(
            or_(activities.c.parent_id == run_id, activities.c.id == run_id)
        )
        touched = union(
            select(edges.c.subject_id.label("id")).where(
                edges.c.relation == "wasGeneratedBy", edges.c.object_id.in_(steps)
            ),
            select(edges.c.object_id.label("id")).where(
                edges.c.relation == "used", edges.c.subject_id.in_(steps)
            ),
        ).subquery()
        query = select(entities).where(entities.c.id.in_(select(touched.c.id)))
        if kinds is not None:
            query = query.where(entities.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(entities.c.kind, entities.c.name)).all()
        return [entity_from_row(row) for row in rows]

    def get_activity(self, activity_id: str) -> Activity:
        """Return the activity with this id.

        Raises
        ------
        NotFoundError
            If no activity has this id.
        """
        table = schema.activities
        with self.engine.connect() as conn:
            row = conn.execute(select(table).where(table.c.id == activity_id)).first()
        if row is None:
            raise NotFoundError(f"no activity {activity_id} in {self.url_for_display}")
        return activity_from_row(row)

    def activities(self, parent_id: str | None = None, kind: str | None = None) -> list[Activity]:
        """Return activities, optionally the children of ``parent_id`` or of one ``kind``."""
        table = schema.activities
        query = select(table)
        if parent_id is not None:
            query = query.where(table.c.parent_id == parent_id)
        if kind is not None:
            query = query.where(table.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.started_at)).all()
        return [activity_from_row(row) for row in rows]

    def edges(
        self,
        relation: str | None = None,
        subject_id: str | None = None,
        object_id: str | None = None,
    ) -> list[Edge]:
        """Return stored edges matching every given filter."""
        table = schema.edges
        query = select(table.c.relation, table.c.subject_id, table.c.object_id)
        if relation is not None:
            query = query.where(table.c.relation == relation)
        if subject_id is not None:
            query = query.where(table.c.subject_id == subject_id)
        if object_id is not None:
            query = query.where(table.c.object_id == object_id)
        with self.engine.connect() as conn:
            return [Edge(*row) for row in conn.execute(query.order_by(table.c.id))]
