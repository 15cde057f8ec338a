"""The closed vocabulary of the catalog: node types, entity kinds and PROV relations.

This table is the one place that says which relation may join which node types; the
database schema derives its CHECK constraint from it and :class:`Catalog` validates against
it before writing (:func:`check_edge_ends`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from matscreen.tasks.errors import ProvenanceRuleError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from matscreen.catalog.nodes import Edge

NODE_TYPES = ("entity", "activity", "agent")

#: relation -> (subject node type, object node type), read "subject relation object".
RELATIONS: dict[str, tuple[str, str]] = {
    "used": ("activity", "entity"),
    "wasGeneratedBy": ("entity", "activity"),
    "wasDerivedFrom": ("entity", "entity"),
    # The same crystal reported twice (by two sources, or twice by one): the later record
    # is an alternate of the first, whose structure is the one stored and featurized.
    "alternateOf": ("entity", "entity"),
    "wasAssociatedWith": ("activity", "agent"),
    "wasAttributedTo": ("entity", "agent"),
}

#: Every kind of entity the catalog stores.
ENTITY_KINDS = (
    "campaign_spec",
    "source_snapshot",
    "structure_record",
    "record_error",
    "data_split",
    "feature_table",
    "training_set",
    "model",
    "prediction_set",
    "ranking",
    "report",
)

#: A flow run holds steps and task runs; a step (e.g. featurize) may hold the task runs it mapped.
ACTIVITY_KINDS = ("flow_run", "step", "task_run")
#: ``interrupted``: stopped by the user (Ctrl-C); ``crashed``: its process died while it was
#: ``running`` (found later by the host + pid check of :mod:`matscreen.catalog.liveness`).
ACTIVITY_STATUSES = ("running", "completed", "failed", "interrupted", "crashed")
AGENT_KINDS = ("software", "person")

#: Relations followed when walking from a result back to its sources.
UPSTREAM_RELATIONS = ("wasDerivedFrom", "wasGeneratedBy", "used")


def relation_check_sql() -> str:
    """Return the SQL CHECK expression that admits exactly the relations in :data:`RELATIONS`."""
    clauses = [
        f"(relation = '{name}' AND subject_type = '{subject}' AND object_type = '{obj}')"
        for name, (subject, obj) in RELATIONS.items()
    ]
    return " OR ".join(clauses)


def in_check_sql(column: str, values: tuple[str, ...]) -> str:
    """Return a SQL CHECK expression restricting ``column`` to ``values``."""
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def check_edge_ends(edge: Edge, types: Mapping[str, str], stored: bool = False) -> None:
    """Refuse an edge whose ends, of the types in ``types``, the rules table does not allow;
    with ``stored``, also one whose end is not in ``types`` (not stored).

    Raises
    ------
    ProvenanceRuleError
        Naming the relation and the node at fault.
    """
    subject_type, object_type = RELATIONS[edge.relation]
    for node_id, wanted in ((edge.subject_id, subject_type), (edge.object_id, object_type)):
        actual = types.get(node_id)
        if actual is None and stored:
            raise ProvenanceRuleError(f"{edge.relation}: node {node_id} is not stored")
        if actual is not None and actual != wanted:
            raise ProvenanceRuleError(
                f"{edge.relation} needs {subject_type} -> {object_type}, "
                f"but {node_id} is an {actual}"
            )
