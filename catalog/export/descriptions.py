"""Model cards and the schema.org description of a run's dataset."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.export.facts import RunFacts, citations, licence_of, source_licences
from matscreen.catalog.export.files import OUTPUT_FILES, CrateFile
from matscreen.catalog.export.prov import NAMESPACE, entity_urn
from matscreen.catalog.nodes import Entity
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import file_sha256


def slug(name: str) -> str:
    """``name`` made safe for a file name or a local id (runs of other characters → ``-``)."""
    return re.sub(r"[^\w.-]+", "-", name).strip("-")


def model_id(model: Entity) -> str:
    """The crate's local id of a model entity."""
    return f"#model-{model.id[:16]}"


def model_card(facts: RunFacts, model: Entity, artifacts: ArtifactStore) -> dict[str, Any]:
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


def write_model_cards(facts: RunFacts, artifacts: ArtifactStore, out_dir: Path) -> list[CrateFile]:
    """Write one ``model-card-<name>.json`` per model of the run; return them as crate files."""
    cards = []
    for model in facts.models:
        card = model_card(facts, model, artifacts)
        name = f"model-card-{slug(model.name)}.json"
        write_atomically(out_dir / name, (json.dumps(card, indent=2) + "\n").encode("utf-8"))
        description = f"Model card of the {card['algorithm']} model of {card['target']}"
        cards.append(CrateFile(name, "application/json", description, about=model_id(model)))
    return cards


# -- schema.org dataset description ---------------------------------------------------------
def _criteria_text(criteria: list[dict[str, Any]]) -> str:
    parts = []
    for c in criteria:
        low = f"{c['min']:g} <= " if c.get("min") is not None else ""
        high = f" <= {c['max']:g}" if c.get("max") is not None else ""
        parts.append(f"{low}{c['property']}{high} {c.get('unit', '')}".strip())
    return "; ".join(parts)


def source_jsonld(snapshot: Entity) -> dict[str, Any]:
    """A source snapshot as a schema.org ``Dataset`` node."""
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


def dataset_description(facts: RunFacts, files: Mapping[str, Path]) -> dict[str, Any]:
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
        "license": [licence.jsonld() for licence in source_licences(facts.snapshots).values()],
        "citation": citations(facts.snapshots),
        "dateCreated": created or (ranking.created_at if ranking else graph.run.started_at),
        "isBasedOn": [source_jsonld(s) for s in facts.snapshots],
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
