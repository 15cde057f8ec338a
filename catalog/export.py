"""FAIR exports of one campaign run: W3C PROV, an RO-Crate and a schema.org description.

Everything here is a pure function of the catalog (and, for the crate, the artifact store
and the run's output folder); nothing is read from the environment except to recognise
secrets that must not leave it (see :func:`secret_values`).

Identifiers
-----------
Catalog nodes are named in the ``matscreen:`` namespace, bound to ``urn:matscreen:``:
``urn:matscreen:entity:<sha256>`` (entities are content-addressed, so the name is stable
across catalogs), ``urn:matscreen:activity:<run id>`` (Prefect run ids or UUIDs) and
``urn:matscreen:agent:<sha256>``. Attribute names use the same namespace
(``matscreen:licence``). A URN is used rather than an ``https`` address because no server
answers for these names: they are meant to be globally distinct and stable, and they are
resolved through a catalog, not the web.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import prov.model as pm
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate
from sqlalchemy import bindparam, text

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.lineage import PER_RECORD_SQL
from matscreen.catalog.store import Activity, Catalog, Edge, Entity, _activity_from_row
from matscreen.tasks.errors import ArtifactError, CatalogError, NotFoundError, ProvenanceRuleError
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import (
    canonical_json,
    content_hash,
    file_sha256,
    sha256_text,
    structure_hash,
)
from matscreen.tasks.report.outputs import shortlist_frame
from matscreen.tasks.secrets import (
    REDACTED,
    SECRET_WORDS,
    URL_PASSWORD,
    URL_SECRET_QUERY,
    mask_url,
)
from matscreen.tasks.tables import parquet_to_frame

NAMESPACE = "urn:matscreen:"
PREFIX = "matscreen"

#: The files a campaign run writes into its output folder, with their media types.
OUTPUT_FILES = {
    "shortlist.csv": "text/csv",
    "ranking.csv": "text/csv",
    "metrics.json": "application/json",
    "report.html": "text/html",
}
#: Sub-folders of the output folder whose files belong to the run (DFT hand-off structures).
OUTPUT_FOLDERS = ("structures",)
#: Media types of the files in those sub-folders, by suffix; others are ``text/plain``.
SUFFIX_MEDIA_TYPES = {
    ".cif": "chemical/x-cif",
    ".jsonl": "application/jsonl",
    ".json": "application/json",
    ".csv": "text/csv",
    ".png": "image/png",
    ".html": "text/html",
}
CRATE_METADATA = "ro-crate-metadata.json"
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"

# Attribute values longer than this (JSON text of lists and dicts included) are exported
# as a count and a sha256 instead: the catalog keeps the full value under the entity id.
_MAX_TEXT = 2000
_MAX_LISTED = 20
_NOT_IN_NAME = re.compile(r"[^\w.-]")

# -- secrets --------------------------------------------------------------------------------
_SECRET_NAME = re.compile(rf"(?:^|_){SECRET_WORDS}$", re.IGNORECASE)
_SECRET_KEY_IN_JSON = re.compile(rf'"(?:[^"\\]*_)?{SECRET_WORDS}"\s*:', re.IGNORECASE)
# Shorter values ("1", "true") would be masked wherever they occur in ordinary text.
_MIN_SECRET_LENGTH = 8


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values in the environment that must never appear in an export.

    These are the values of variables named like a secret (``MP_API_KEY``,
    ``PGPASSWORD``, ``…_TOKEN``) and passwords inside URLs (``MATSCREEN_CATALOG_URL``),
    when at least 8 characters long.
    """
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name):
            found.add(value)
        found.update(match.group(2) for match in URL_PASSWORD.finditer(value))
    return {value for value in found if len(value) >= _MIN_SECRET_LENGTH}


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Mask secrets in ``value`` (recursively through dicts and lists).

    Values under secret-looking keys become ``***``, as do URL passwords, secret URL
    query parameters and every occurrence of one of ``secrets``.
    """
    secrets = sorted(set(secrets), key=len, reverse=True)
    return _redact(value, secrets)


def _redact_json(text_: str, secrets: list[str]) -> Any:
    """Parse a stored JSON text and mask its secrets.

    The text is searched first, so that the bulk of a catalog (thousands of structure
    records with nothing to mask) is only parsed, not walked.
    """
    value = json.loads(text_)
    needles = {n for s in secrets for n in (s, json.dumps(s)[1:-1])}
    if (
        URL_PASSWORD.search(text_)
        or URL_SECRET_QUERY.search(text_)
        or _SECRET_KEY_IN_JSON.search(text_)
        or any(n in text_ for n in needles)
    ):
        return _redact(value, secrets)
    return value


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_NAME.search(str(k)) and v else _redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    if isinstance(value, str):
        value = mask_url(value)
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


# -- the run's part of the catalog ----------------------------------------------------------
@dataclass(frozen=True)
class AgentNode:
    """A software or person agent of the catalog."""

    id: str
    kind: str
    name: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSubgraph:
    """One campaign run's activities, the entities they touched and what those came from.

    Attributes
    ----------
    run
        The run's ``flow_run`` activity.
    activities
        The run and every activity inside it (steps, task runs), by start time.
    entities
        Entities the run's activities generated or used, plus every entity reached from
        those by ``wasDerivedFrom`` or ``alternateOf`` edges recorded before the run ended
        (e.g. the snapshot an earlier run read a reused record from).
    direct
        Ids of the entities the run's activities generated or used themselves.
    agents
        Agents the activities were associated with and the entities attributed to.
    edges
        Every stored edge between these nodes.
    units
        The unit of every label the run's structure records hold (``{"band_gap": "eV"}``).
    """

    run: Activity
    activities: list[Activity]
    entities: dict[str, Entity]
    direct: frozenset[str]
    agents: dict[str, AgentNode]
    edges: list[Edge]
    units: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str, direct_only: bool = False) -> list[Entity]:
        """Entities of ``kind``, by name; only those the run itself touched if asked."""
        found = [
            e
            for e in self.entities.values()
            if e.kind == kind and (not direct_only or e.id in self.direct)
        ]
        return sorted(found, key=lambda e: (e.name, e.id))

    @cached_property
    def _objects(self) -> dict[tuple[str, str], list[str]]:
        index: dict[tuple[str, str], list[str]] = {}
        for edge in self.edges:
            index.setdefault((edge.relation, edge.subject_id), []).append(edge.object_id)
        return index

    def objects(self, relation: str, subject_id: str) -> list[str]:
        """Ids that ``subject_id`` points to by ``relation`` (e.g. what an entity came from)."""
        return self._objects.get((relation, subject_id), [])


# One set of common table expressions scopes every query to the run: its activities (the
# flow run and, recursively, the activities inside it), the entities they generated or
# used, and everything upstream of those by derivation. The database walks the edges, so
# a run with thousands of records costs a handful of queries, not one per node.
# Entities are shared between runs (same content, same entity), and a later run that
# reads a record again adds a derivation from its own snapshot; edges recorded after the
# run ended are therefore left out, so a run's export stays what it was when it finished.
_SCOPE = """
WITH RECURSIVE
run_activities(id) AS (
    SELECT CAST(:run AS VARCHAR(64))
    UNION
    SELECT a.id FROM activities a JOIN run_activities r ON a.parent_id = r.id
),
direct(id) AS (
    SELECT e.subject_id FROM edges e
    WHERE e.relation = 'wasGeneratedBy' AND e.object_id IN (SELECT id FROM run_activities)
    UNION
    SELECT e.object_id FROM edges e
    WHERE e.relation = 'used' AND e.subject_id IN (SELECT id FROM run_activities)
),
reached(id) AS (
    SELECT id FROM direct
    UNION
    SELECT e.object_id FROM edges e JOIN reached r ON e.subject_id = r.id
    WHERE e.relation IN ('wasDerivedFrom', 'alternateOf') AND e.recorded_at <= :until
),
scope(id) AS (SELECT id FROM run_activities UNION SELECT id FROM reached)
"""
_AGENT_RELATIONS = "('wasAssociatedWith', 'wasAttributedTo')"
#: Entity kinds a run holds one of per structure read: a campaign of a million candidates
#: holds a million of each, which the run's crate does not describe one by one.
_NOT_RECORD = f"en.kind NOT IN ({PER_RECORD_SQL})"


def _queries(records: bool) -> dict[str, str]:
    """The subgraph's queries; without ``records``, structure records and record errors
    (and their edges) are left out."""
    kept = "scope"
    extra = ""
    if not records:
        kept = "kept"
        extra = (
            ",\nkept(id) AS (SELECT id FROM run_activities UNION SELECT en.id FROM entities en "
            f"WHERE en.id IN (SELECT id FROM reached) AND {_NOT_RECORD})"
        )
    only = "" if records else f" AND {_NOT_RECORD}"
    queries = {
        "activities": "SELECT a.* FROM activities a WHERE a.id IN (SELECT id FROM run_activities)",
        "direct": ("SELECT en.id FROM entities en WHERE en.id IN (SELECT id FROM direct)" + only),
        "entities": "SELECT en.* FROM entities en WHERE en.id IN (SELECT id FROM reached)" + only,
        "edges": (
            "SELECT e.relation, e.subject_id, e.object_id FROM edges e "
            f"WHERE e.subject_id IN (SELECT id FROM {kept}) AND e.recorded_at <= :until "
            f"AND (e.relation IN {_AGENT_RELATIONS} OR e.object_id IN (SELECT id FROM {kept})) "
            "ORDER BY e.id"
        ),
        "agents": (
            "SELECT ag.* FROM agents ag WHERE ag.id IN (SELECT e.object_id FROM edges e "
            f"WHERE e.relation IN {_AGENT_RELATIONS} AND e.subject_id IN (SELECT id FROM {kept}))"
        ),
    }
    return {name: _SCOPE + extra + "\n" + query for name, query in queries.items()}


def run_subgraph(catalog: Catalog, run_id: str, records: bool = True) -> RunSubgraph:
    """Read one campaign run's part of the catalog, with secrets masked.

    Parameters
    ----------
    catalog
        The catalog holding the run.
    run_id
        The id of the run's ``flow_run`` activity (the Prefect flow run id).
    records
        Whether to read the structure records and record errors too (PROV exports name
        every one). Without them (a run's crate), the database still walks every record's
        edges, but none is sent back or held; the units of the labels are then read from
        a few records of each training set.

    Returns
    -------
    RunSubgraph
        Activities, entities, agents and edges of the run; parameters and attributes pass
        through :func:`redact`, so every export built from it is free of secrets.

    Raises
    ------
    NotFoundError
        If ``run_id`` is not an activity of the catalog, or not a campaign (flow) run.
    """
    run = catalog.get_activity(run_id)
    if run.kind != "flow_run":
        raise NotFoundError(f"activity {run_id} is a {run.kind}, not a campaign run")
    # Catalog times are ISO 8601 UTC strings of one format, so they compare as text.
    until = run.ended_at or "9999"
    rows: dict[str, list[Any]] = {}
    with catalog.engine.connect() as conn:
        for name, query in _queries(records).items():
            rows[name] = conn.execute(text(query), {"run": run_id, "until": until}).all()
    secrets = sorted(secret_values(), key=len, reverse=True)
    activities = [_activity_from_row(row) for row in rows["activities"]]
    activities = [
        replace(a, parameters=_redact(a.parameters, secrets))
        for a in sorted(activities, key=lambda a: (a.id != run_id, a.started_at, a.id))
    ]
    entities = {
        row.id: Entity(
            row.id, row.kind, row.name, _redact_json(row.attributes, secrets), row.created_at
        )
        for row in rows["entities"]
    }
    agents = {
        row.id: AgentNode(row.id, row.kind, row.name, _redact_json(row.attributes, secrets))
        for row in rows["agents"]
    }
    # Each query sees the catalog as committed when it ran; a run still being written may
    # have gained nodes in between, and edges to nodes read by no query are left out.
    known = {a.id for a in activities} | set(entities) | set(agents)
    if records:
        direct = {row[0] for row in rows["direct"]}
        records_read = [
            e for e in entities.values() if e.kind == "structure_record" and e.id in direct
        ]
        units = _units(e.attributes for e in sorted(records_read, key=lambda e: (e.name, e.id)))
    else:
        units = _training_units(catalog, entities.values())
    return RunSubgraph(
        run=activities[0],
        activities=activities,
        entities=entities,
        direct=frozenset(row[0] for row in rows["direct"]) & set(entities),
        agents=agents,
        edges=[Edge(*row) for row in rows["edges"] if row[1] in known and row[2] in known],
        units=units,
    )


def _units(attributes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The first unit given for each label in these structure records' attributes."""
    units: dict[str, str] = {}
    for record in attributes:
        for name, unit in record.get("units", {}).items():
            units.setdefault(name, unit)
    return units


#: Records per source read to learn the units of a training set's labels (a source gives
#: every record of it the same units).
UNIT_SAMPLE = 20


def _training_units(catalog: Catalog, entities: Iterable[Entity]) -> dict[str, str]:
    """Units of the labels of the records the run's training sets name, from a few records
    of each source (record ids are ``source:source_id``)."""
    by_source: dict[str, list[str]] = {}
    for entity in entities:
        if entity.kind == "training_set":
            for record_id in entity.attributes.get("ids", []):
                names = by_source.setdefault(str(record_id).split(":", 1)[0], [])
                if len(names) < UNIT_SAMPLE:
                    names.append(str(record_id))
    names = sorted({n for group in by_source.values() for n in group})
    if not names:
        return {}
    query = text(
        "SELECT attributes FROM entities WHERE kind = 'structure_record' AND name IN :names "
        "ORDER BY id"
    ).bindparams(bindparam("names", expanding=True))
    with catalog.engine.connect() as conn:
        rows = conn.execute(query, {"names": names}).all()
    return _units(json.loads(row[0]) for row in rows)


# -- W3C PROV -------------------------------------------------------------------------------
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
        attributes = {"versions" if software else "attributes": agent.attributes}
        doc.agent(
            node_name("agent", agent.id),
            [(pm.PROV_TYPE, kind), (pm.PROV_LABEL, agent.name)] + _pairs(attributes),
        )
    for activity in subgraph.activities:
        attributes: dict[str, Any] = {
            "status": activity.status,
            "host": activity.host,
            "prefect_run_id": activity.prefect_run_id,
            "git_commit": activity.git_commit,
            "parameters": activity.parameters,
        }
        # Children share the run's software; repeat it only where it differs.
        if activity.id == subgraph.run.id or activity.software != subgraph.run.software:
            attributes["software"] = activity.software
        pairs = [(pm.PROV_TYPE, ns[activity.kind]), (pm.PROV_LABEL, activity.name)]
        pairs += _pairs(attributes)
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
    relations = {
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
    write_atomically(paths.json, doc.serialize(format="json", indent=1).encode("utf-8"))
    turtle = doc.serialize(format="rdf", rdf_format="turtle")
    write_atomically(paths.turtle, turtle.encode("utf-8"))
    return paths


# -- what the crate and the dataset description say about a run ----------------------------
def entity_urn(entity_id: str) -> str:
    """The URN of a catalog entity, e.g. ``urn:matscreen:entity:<sha256>``."""
    return f"{NAMESPACE}entity:{entity_id}"


@dataclass(frozen=True)
class _RunFacts:
    """The parts of a run's subgraph the crate and the dataset description are made of."""

    graph: RunSubgraph
    spec: dict[str, Any]
    snapshots: list[Entity]
    models: list[Entity]
    ranking: Entity | None
    report: Entity | None
    person: AgentNode | None
    units: dict[str, str]

    @property
    def campaign(self) -> str:
        return str(self.spec.get("name") or self.graph.run.name)


def _run_facts(graph: RunSubgraph) -> _RunFacts:
    report = next(iter(graph.of_kind("report", direct_only=True)), None)
    reported = set(graph.objects("wasDerivedFrom", report.id)) if report else set()
    # The report names the ranking and models it was made from; without a report (a run
    # that failed before writing it) the run's own rankings and models stand in.
    rankings = graph.of_kind("ranking", direct_only=True)
    ranking = next((r for r in rankings if r.id in reported), next(iter(rankings), None))
    models = graph.of_kind("model", direct_only=True)
    models = [m for m in models if m.id in reported] or models
    specs = graph.of_kind("campaign_spec", direct_only=True)
    spec = specs[0].attributes.get("spec", {}) if specs else {}
    agents = [graph.agents[a] for a in graph.objects("wasAssociatedWith", graph.run.id)]
    person = next((a for a in agents if a.kind == "person"), None)
    units = dict(graph.units)
    for criterion in spec.get("criteria", []):
        units.setdefault(criterion["property"], criterion.get("unit", ""))
    return _RunFacts(
        graph=graph,
        spec=spec,
        snapshots=graph.of_kind("source_snapshot", direct_only=True),
        models=models,
        ranking=ranking,
        report=report,
        person=person,
        units=units,
    )


# -- licences -------------------------------------------------------------------------------
#: SPDX identifiers recognised in a source's licence text, with the licence's own page.
SPDX_LICENCES = {
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC-BY-NC-4.0": "https://creativecommons.org/licenses/by-nc/4.0/",
    "CC-BY-3.0": "https://creativecommons.org/licenses/by/3.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
    "ODC-By-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "PDDL-1.0": "https://opendatacommons.org/licenses/pddl/1-0/",
    "MIT": "https://opensource.org/license/mit",
    "Apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
    "BSD-3-Clause": "https://opensource.org/license/bsd-3-clause",
}


@dataclass(frozen=True)
class Licence:
    """A licence as a linked-data node: an SPDX address when recognised, else a local id."""

    id: str
    name: str
    url: str | None
    description: str

    def jsonld(self) -> dict[str, Any]:
        """The licence as a schema.org ``CreativeWork``."""
        node = {"@type": "CreativeWork", "name": self.name, "description": self.description}
        if self.url:
            node = {"@id": self.id, **node, "identifier": self.name, "url": self.url}
        return node


def licence_of(licence: str) -> Licence:
    """Recognise the SPDX licence named in a source's licence text.

    ``"MIT (CDVAE split of the CMR data)"`` is the MIT licence and ``"CC BY 4.0"`` is
    CC-BY-4.0; the text itself is kept as the description. Unrecognised text becomes a
    local licence node named by the text.
    """
    for spdx in sorted(SPDX_LICENCES, key=len, reverse=True):
        pattern = re.escape(spdx).replace(r"\-", r"[-\s]")
        if re.search(rf"(?<![\w.-]){pattern}(?![\w-]|\.\d)", licence, re.IGNORECASE):
            return Licence(f"https://spdx.org/licenses/{spdx}", spdx, SPDX_LICENCES[spdx], licence)
    return Licence(f"#licence-{sha256_text(licence)[:12]}", licence, None, licence)


def _licences(snapshots: Iterable[Entity]) -> dict[str, Licence]:
    """The distinct licences of the sources, their texts joined when two name one licence."""
    found: dict[str, Licence] = {}
    for snapshot in snapshots:
        licence = licence_of(str(snapshot.attributes.get("licence", "")))
        known = found.get(licence.id)
        if known is None:
            found[licence.id] = licence
        elif licence.description not in known.description.split("; "):
            found[licence.id] = Licence(
                known.id, known.name, known.url, f"{known.description}; {licence.description}"
            )
    return found


def _citations(snapshots: Iterable[Entity]) -> list[str]:
    seen: dict[str, None] = {}
    for snapshot in snapshots:
        seen.update(dict.fromkeys(snapshot.attributes.get("citation", [])))
    return list(seen)


# -- files of the crate ---------------------------------------------------------------------
@dataclass(frozen=True)
class _CrateFile:
    """A file of a crate and what to say about it."""

    name: str
    media_type: str
    description: str
    identifier: str | None = None
    about: str | None = None


def _check_secrets(data: bytes, where: Path | str, secrets: Iterable[str]) -> None:
    for secret in secrets:
        if secret.encode("utf-8") in data:
            raise CatalogError(
                f"{where} holds the value of a secret environment variable; not exporting it"
            )


def _verify_recorded(path: Path, recorded: dict[str, Any] | None, run_id: str) -> None:
    if recorded is None:
        return
    actual = file_sha256(path)
    if actual != recorded["sha256"]:
        raise ArtifactError(
            f"{path} has sha256 {actual}, but run {run_id} wrote {path.name} with sha256 "
            f"{recorded['sha256']}: the file changed after the run"
        )


def _written_by(facts: _RunFacts, name: str) -> str:
    run_id = facts.graph.run.id
    if facts.report is None:
        return f"{name} written by run {run_id}"
    return f"{name} written by run {run_id}, recorded in {entity_urn(facts.report.id)}"


def _media_type(name: str) -> str:
    return OUTPUT_FILES.get(name) or SUFFIX_MEDIA_TYPES.get(Path(name).suffix, "text/plain")


def _recorded_in_folders(recorded: Mapping[str, Any]) -> list[str]:
    """Recorded names of files in sub-folders; names that could leave the folder are not."""
    return sorted(
        name
        for name in recorded
        if "/" in name
        and not name.startswith("/")
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )


def _subfolder_names(folder: Path, recorded: Mapping[str, Any]) -> list[str]:
    """Names (``structures/001_x.cif``) of the run's files in sub-folders of ``folder``.

    The sub-folders are :data:`OUTPUT_FOLDERS` and those of files the run recorded. Where
    the run recorded files of a sub-folder, exactly those are the run's (found or not);
    otherwise every regular file in it is. Hidden names (temporary files) and symbolic
    links are never taken.
    """
    in_folders = _recorded_in_folders(recorded)
    tops = dict.fromkeys([*OUTPUT_FOLDERS, *(n.split("/", 1)[0] for n in in_folders)])
    names = set(in_folders)
    for top in tops:
        if any(n.startswith(f"{top}/") for n in in_folders):
            continue
        base = folder / top
        if not base.is_dir() or base.is_symlink():
            continue
        for path in base.rglob("*"):
            parts = path.relative_to(folder).parts
            if path.is_file() and not path.is_symlink() and not any(p[0] == "." for p in parts):
                names.add("/".join(parts))
    return sorted(names)


def _folder_outputs(facts: _RunFacts, folder: Path, secrets: list[str]) -> list[_CrateFile]:
    """The run's output files found in ``folder``, checked against what the run recorded.

    These are :data:`OUTPUT_FILES` and the files in sub-folders (:func:`_subfolder_names`),
    named by their path relative to ``folder``.

    Raises
    ------
    ArtifactError
        If a file the run recorded is missing from ``folder`` or has other content.
    CatalogError
        If a file holds the value of a secret environment variable.
    """
    run_id = facts.graph.run.id
    recorded = facts.report.attributes.get("files", {}) if facts.report else {}
    files = []
    for name in [*OUTPUT_FILES, *_subfolder_names(folder, recorded)]:
        path = folder / name
        if not path.is_file():
            if name in recorded:
                raise ArtifactError(f"{path} is missing, but run {run_id} wrote {name}")
            continue
        _verify_recorded(path, recorded.get(name), run_id)
        _check_secrets(path.read_bytes(), path, secrets)
        files.append(_CrateFile(name, _media_type(name), _written_by(facts, name)))
    return files


def _regenerated_tables(facts: _RunFacts, artifacts: ArtifactStore) -> dict[str, str]:
    """``ranking.csv`` and ``shortlist.csv`` rebuilt from the ranking artifact."""
    if facts.ranking is None:
        return {}
    stored = artifacts.get_bytes(facts.ranking.attributes["artifact_sha256"])
    ranking = parquet_to_frame(stored).reset_index()
    # The same CSV dialect as the run's own output files (tasks/report/outputs.py).
    tables = {"ranking.csv": ranking.to_csv(index=False, float_format="%.6g")}
    if "shortlist_size" in facts.spec:
        shortlist = shortlist_frame(ranking, int(facts.spec["shortlist_size"]))
        tables["shortlist.csv"] = shortlist.to_csv(index=False, float_format="%.6g")
    return tables


def _gather_outputs(
    facts: _RunFacts,
    artifacts: ArtifactStore,
    out_dir: Path,
    outputs_dir: Path | None,
    secrets: list[str],
) -> tuple[list[_CrateFile], list[str]]:
    """Put the run's output files into ``out_dir``; return them and the names left out."""
    if outputs_dir is not None:
        files = _folder_outputs(facts, Path(outputs_dir), secrets)
        for item in files:
            source, target = Path(outputs_dir) / item.name, out_dir / item.name
            if not (target.exists() and target.samefile(source)):
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(target, source.read_bytes())
        return files, []

    run_id = facts.graph.run.id
    recorded = facts.report.attributes.get("files", {}) if facts.report else {}
    tables = _regenerated_tables(facts, artifacts)
    files, omitted = [], []
    for name in [*OUTPUT_FILES, *_recorded_in_folders(recorded)]:
        media_type = _media_type(name)
        entry = recorded.get(name)
        if name in tables and facts.ranking is not None:
            data = tables[name].encode("utf-8")
            _check_secrets(data, name, secrets)
            write_atomically(out_dir / name, data)
            note = f"{name} regenerated from {entity_urn(facts.ranking.id)}"
            if entry and entry["sha256"] != sha256_text(tables[name]):
                note += f"; the file run {run_id} wrote had sha256 {entry['sha256']}"
            files.append(_CrateFile(name, media_type, note))
            continue
        # Files that cannot be rebuilt are taken from where the run wrote them, if they
        # are still there unchanged.
        source = Path(entry["path"]) if entry else None
        if entry and source and source.is_file() and file_sha256(source) == entry["sha256"]:
            data = source.read_bytes()
            _check_secrets(data, source, secrets)
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(out_dir / name, data)
            files.append(_CrateFile(name, media_type, _written_by(facts, name)))
        else:
            omitted.append(name)
    return files, omitted


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-")


def _model_id(model: Entity) -> str:
    return f"#model-{model.id[:16]}"


def model_card(facts: _RunFacts, model: Entity, artifacts: ArtifactStore) -> dict[str, Any]:
    """A model's card: what it predicts, how it was fitted, how well it did, where it is."""
    attributes = model.attributes
    graph = facts.graph
    training = [
        graph.entities[i]
        for i in graph.objects("wasDerivedFrom", model.id)
        if i in graph.entities and graph.entities[i].kind == "training_set"
    ]
    artifact = artifacts.path_for(attributes["artifact_sha256"])
    target = attributes.get("target", "")
    return {
        "model": model.name,
        "identifier": entity_urn(model.id),
        "campaign": facts.campaign,
        "run": graph.run.id,
        "target": target,
        "unit": facts.units.get(target, ""),
        "algorithm": attributes.get("algorithm"),
        "hyperparameters": attributes.get("params", {}),
        "metrics": attributes.get("metrics", {}),
        "metrics_note": "held-out test set chosen before fitting; dummy_mae is the mean model",
        "training_set": [
            {
                "identifier": entity_urn(t.id),
                "n_rows": t.attributes.get("n_rows"),
                "label_mean": t.attributes.get("label_mean"),
            }
            for t in training
        ],
        "n_features": attributes.get("n_features"),
        "feature_labels_sha256": attributes.get("feature_labels_sha256"),
        "clip_min": attributes.get("clip_min"),
        "software": attributes.get("versions", {}),
        "artifact": {
            "sha256": attributes["artifact_sha256"],
            "format": attributes.get("format"),
            "bytes": artifact.stat().st_size if artifact.is_file() else None,
        },
    }


def _write_model_cards(
    facts: _RunFacts, artifacts: ArtifactStore, out_dir: Path
) -> list[_CrateFile]:
    cards = []
    for model in facts.models:
        card = model_card(facts, model, artifacts)
        name = f"model-card-{_slug(model.name)}.json"
        write_atomically(out_dir / name, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
        description = f"Model card of the {card['algorithm']} model of {card['target']}"
        cards.append(_CrateFile(name, "application/json", description, about=_model_id(model)))
    return cards


# -- schema.org dataset description ---------------------------------------------------------
def _criteria_text(criteria: list[dict[str, Any]]) -> str:
    parts = []
    for c in criteria:
        low = f"{c['min']:g} <= " if c.get("min") is not None else ""
        high = f" <= {c['max']:g}" if c.get("max") is not None else ""
        parts.append(f"{low}{c['property']}{high} {c.get('unit', '')}".strip())
    return "; ".join(parts)


def _source_jsonld(snapshot: Entity) -> dict[str, Any]:
    attributes = snapshot.attributes
    node: dict[str, Any] = {
        "@id": entity_urn(snapshot.id),
        "@type": "Dataset",
        "name": snapshot.name,
        "description": (
            f"{attributes.get('kind', '')} source read from {attributes.get('location', '')} "
            f"({attributes.get('n_rows', 0)} rows)"
        ),
        "license": licence_of(str(attributes.get("licence", ""))).jsonld(),
        "citation": list(attributes.get("citation", [])),
        "sha256": attributes.get("sha256"),
    }
    if attributes.get("database_version"):
        node["version"] = attributes["database_version"]
    if str(attributes.get("location", "")).startswith(("http://", "https://")):
        node["url"] = attributes["location"]
    return node


def dataset_description(facts: _RunFacts, files: Mapping[str, Path]) -> dict[str, Any]:
    """A schema.org ``Dataset`` (JSON-LD, inline context) for the shortlist and ranking.

    Parameters
    ----------
    facts
        The run.
    files
        The ranking and shortlist files to list as distributions, by name.
    """
    graph, ranking = facts.graph, facts.ranking
    identifier = entity_urn(ranking.id) if ranking else f"{NAMESPACE}activity:{graph.run.id}"
    criteria = ranking.attributes.get("criteria", []) if ranking else facts.spec.get("criteria", [])
    targets = [str(m.attributes.get("target")) for m in facts.models]
    variables = [
        {
            "@type": "PropertyValue",
            "name": f"pred_{target}",
            "description": f"{target} predicted by model {model.name}",
            "unitText": facts.units.get(target, ""),
        }
        for target, model in zip(targets, facts.models, strict=True)
    ]
    variables += [
        {
            "@type": "PropertyValue",
            "name": f"margin_{c['property']}",
            "description": f"distance of pred_{c['property']} to the nearest bound of its "
            "criterion, positive inside",
            "unitText": c.get("unit", ""),
        }
        for c in criteria
    ]
    created = facts.report.created_at if facts.report else graph.run.ended_at
    description = (
        f"Held-out candidates of campaign {facts.campaign} (run {graph.run.id}), ranked by "
        f"the smallest margin to the criteria: {_criteria_text(criteria)}. "
        f"{facts.spec.get('description', '')}"
    ).strip()
    document: dict[str, Any] = {
        "@context": {"@vocab": "https://schema.org/"},
        "@id": identifier,
        "@type": "Dataset",
        "name": f"{facts.campaign}: ranked candidates of run {graph.run.id}",
        "description": description,
        "identifier": identifier,
        "license": [licence.jsonld() for licence in _licences(facts.snapshots).values()],
        "citation": _citations(facts.snapshots),
        "dateCreated": created or (ranking.created_at if ranking else graph.run.started_at),
        "isBasedOn": [_source_jsonld(s) for s in facts.snapshots],
        "keywords": ["materials screening", facts.campaign, *targets],
        "measurementTechnique": "surrogate models fitted to the sources' reported values",
        "variableMeasured": variables,
        "distribution": [
            {
                "@type": "DataDownload",
                "name": name,
                "contentUrl": name,
                "encodingFormat": OUTPUT_FILES.get(name, "text/csv"),
                "sha256": file_sha256(path),
                "contentSize": str(path.stat().st_size),
            }
            for name, path in files.items()
        ],
    }
    if facts.person is not None:
        document["creator"] = [{"@type": "Person", "name": facts.person.name}]
    return document


# -- RO-Crate -------------------------------------------------------------------------------
class CrateFiles(NamedTuple):
    """What :func:`export_rocrate` wrote."""

    metadata: Path
    dataset: Path
    files: list[Path]
    omitted: list[str]


_ACTION_STATUS = {
    "completed": "http://schema.org/CompletedActionStatus",
    "failed": "http://schema.org/FailedActionStatus",
    "interrupted": "http://schema.org/FailedActionStatus",
    "crashed": "http://schema.org/FailedActionStatus",
    "running": "http://schema.org/ActiveActionStatus",
}


def _context(crate: ROCrate, identifier: str, properties: dict[str, Any]) -> ContextEntity:
    return crate.add(ContextEntity(crate, identifier, properties=properties))


def _build_crate(
    facts: _RunFacts,
    folder: Path,
    files: list[_CrateFile],
    artifacts: ArtifactStore,
    spec_file: str | None = None,
) -> ROCrate:
    """Describe ``files`` (already in ``folder``) and the run that made them as an RO-Crate."""
    run = facts.graph.run
    crate = ROCrate()
    crate.name = f"{facts.campaign}: campaign run {run.id}"
    crate.description = (
        f"Inputs, outputs and provenance of run {run.id} of the screening campaign "
        f"{facts.campaign}. {facts.spec.get('description', '')}"
    ).strip()
    root = crate.root_dataset
    profile = _context(
        crate,
        PROCESS_RUN_CRATE,
        {"@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5"},
    )
    root["conformsTo"] = profile

    # The outputs derive from the sources, so they are offered under the sources' licences.
    licences = [
        _context(crate, licence.id, {k: v for k, v in licence.jsonld().items() if k != "@id"})
        for licence in _licences(facts.snapshots).values()
    ]
    if licences:
        root["license"] = licences if len(licences) > 1 else licences[0]

    person = None
    if facts.person is not None:
        person = _context(
            crate,
            f"#person-{_slug(facts.person.name)}",
            {"@type": "Person", "name": facts.person.name},
        )
        root["creator"] = person

    versions = dict(run.software)
    requirements = [
        _context(
            crate,
            f"#software-{_slug(package)}",
            {"@type": "SoftwareApplication", "name": package, "version": version},
        )
        for package, version in sorted(versions.items())
        if package != "matscreen"
    ]
    commit = f" at git commit {run.git_commit}" if run.git_commit else ""
    software = _context(
        crate,
        "#software-matscreen",
        {
            "@type": "SoftwareApplication",
            "name": "matscreen",
            "version": versions.get("matscreen", ""),
            "description": f"matscreen {versions.get('matscreen', '')}{commit}",
            "softwareRequirements": requirements,
        },
    )

    sources = []
    for snapshot in facts.snapshots:
        node = _source_jsonld(snapshot)
        licence = licence_of(str(snapshot.attributes.get("licence", "")))
        node["license"] = crate.get(licence.id)
        node["identifier"] = node.pop("@id")
        node["contentSize"] = str(snapshot.attributes.get("size_bytes", ""))
        sources.append(_context(crate, f"#source-{snapshot.id[:16]}", node))
    root["isBasedOn"] = sources

    models = []
    for model in facts.models:
        sha = model.attributes["artifact_sha256"]
        artifact = artifacts.path_for(sha)
        properties = {
            "@type": "CreativeWork",
            "name": model.name,
            "description": (
                f"{model.attributes.get('algorithm')} model of {model.attributes.get('target')}"
            ),
            "identifier": entity_urn(model.id),
            "encodingFormat": model.attributes.get("format", ""),
            "sha256": sha,
        }
        if artifact.is_file():
            properties["contentSize"] = str(artifact.stat().st_size)
        models.append(_context(crate, _model_id(model), properties))

    entities = {}
    for item in files:
        path = folder / item.name
        properties: dict[str, Any] = {
            "name": item.name,
            "description": item.description,
            "encodingFormat": item.media_type,
            "sha256": file_sha256(path),
            "contentSize": str(path.stat().st_size),
        }
        if item.identifier:
            properties["identifier"] = item.identifier
        if item.about:
            properties["about"] = crate.get(item.about)
        entities[item.name] = crate.add_file(path, item.name, properties=properties)

    inputs = ([entities[spec_file]] if spec_file in entities else []) + sources
    results = [entities[n] for n in OUTPUT_FILES if n in entities]
    results += [entity for name, entity in entities.items() if "/" in name] + models
    action_properties: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"{run.name} run {run.id}",
        "identifier": f"{NAMESPACE}activity:{run.id}",
        "startTime": run.started_at,
        "actionStatus": {"@id": _ACTION_STATUS.get(run.status, _ACTION_STATUS["running"])},
    }
    if run.ended_at:
        action_properties["endTime"] = run.ended_at
    if person is not None:
        action_properties["agent"] = person
    action = crate.add_action(
        software, f"#run-{run.id}", object=inputs, result=results, properties=action_properties
    )
    root["mentions"] = action
    return crate


def _write_metadata(crate: ROCrate, folder: Path) -> Path:
    path = folder / CRATE_METADATA
    text_ = json.dumps(crate.metadata.generate(), indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, text_.encode("utf-8"))
    return path


def export_rocrate(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str,
    out_dir: Path,
    outputs_dir: Path | None = None,
    subgraph: RunSubgraph | None = None,
) -> CrateFiles:
    """Write an RO-Crate of one campaign run into ``out_dir``.

    The crate holds ``spec.json`` (the campaign spec as recorded), the run's
    ``shortlist.csv``, ``ranking.csv``, ``metrics.json`` and ``report.html``, one JSON model
    card per model and ``dataset.jsonld`` (:func:`dataset_description`). Its metadata
    describes every file with sha256 and size, the data sources with licences and
    citations, the software and the run as a ``CreateAction``. The crate is offered under
    the licences of the sources the outputs derive from.

    Parameters
    ----------
    catalog, artifacts
        Where the run is recorded.
    run_id
        The campaign run.
    out_dir
        Folder of the crate (created if missing).
    outputs_dir
        The run's output folder; its files are copied after checking them against the
        sha256 the run recorded. Without it, the ranking and shortlist are regenerated
        from the ranking artifact, and the metrics and report copied from where the run
        wrote them if they are still there unchanged; otherwise they are left out.
    subgraph
        The run's subgraph if already read (:func:`run_subgraph`).

    Returns
    -------
    CrateFiles
        The metadata file, the dataset description, every file of the crate and the names
        of output files that could not be included.

    Raises
    ------
    NotFoundError
        If the run is not in the catalog.
    ArtifactError
        If an output file differs from what the run recorded, or an artifact is missing.
    CatalogError
        If a file to be copied holds the value of a secret environment variable.
    """
    graph = subgraph or run_subgraph(catalog, run_id, records=False)
    facts = _run_facts(graph)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets = sorted(secret_values(), key=len, reverse=True)

    files: list[_CrateFile] = []
    spec_file = None
    if facts.spec:
        spec_file = "spec.json"
        spec_text = json.dumps(facts.spec, indent=2, ensure_ascii=False) + "\n"
        write_atomically(out_dir / spec_file, spec_text.encode("utf-8"))
        specs = graph.of_kind("campaign_spec", direct_only=True)
        files.append(
            _CrateFile(
                spec_file,
                "application/json",
                f"The campaign spec run {graph.run.id} followed (sha256 of its canonical "
                f"content {specs[0].attributes.get('sha256')})",
                entity_urn(specs[0].id),
            )
        )
    outputs, omitted = _gather_outputs(facts, artifacts, out_dir, outputs_dir, secrets)
    files += outputs
    files += _write_model_cards(facts, artifacts, out_dir)

    tables = {
        f.name: out_dir / f.name for f in outputs if f.name.endswith(".csv") and "/" not in f.name
    }
    dataset = out_dir / "dataset.jsonld"
    document = dataset_description(facts, tables)
    write_atomically(dataset, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    files.append(
        _CrateFile(
            dataset.name, "application/ld+json", "schema.org description of the ranked candidates"
        )
    )

    crate = _build_crate(facts, out_dir, files, artifacts, spec_file)
    metadata = _write_metadata(crate, out_dir)
    return CrateFiles(metadata, dataset, [out_dir / f.name for f in files], omitted)


def write_run_crate(
    catalog: Catalog,
    artifacts: ArtifactStore,
    run_id: str,
    outputs_dir: Path,
    subgraph: RunSubgraph | None = None,
) -> Path:
    """Write ``ro-crate-metadata.json`` into a run's output folder, describing its files.

    The folder's output files (shortlist, ranking, metrics, report) are checked against
    the sha256 the run recorded and described in place; nothing else is written.

    Returns
    -------
    Path
        The metadata file.

    Raises
    ------
    NotFoundError
        If the run is not in the catalog.
    ArtifactError
        If a file the run wrote is missing or changed.
    CatalogError
        If a file holds the value of a secret environment variable.
    """
    facts = _run_facts(subgraph or run_subgraph(catalog, run_id, records=False))
    folder = Path(outputs_dir)
    files = _folder_outputs(facts, folder, sorted(secret_values(), key=len, reverse=True))
    return _write_metadata(_build_crate(facts, folder, files, artifacts), folder)
