"""The provenance catalog: the only package that talks to the database.

Entities are immutable and content-addressed, activities record every flow and task run,
agents are the software and the user, and edges are the closed set of PROV relations in
:mod:`matscreen.catalog.rules`.
"""

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.nodes import Activity, Edge, Entity
from matscreen.catalog.rules import ENTITY_KINDS, RELATIONS
from matscreen.catalog.store import Catalog

__all__ = ["ArtifactStore", "Activity", "Catalog", "Edge", "Entity", "ENTITY_KINDS", "RELATIONS"]
