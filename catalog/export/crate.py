"""A run as an RO-Crate (Workflow Run Crate, process profile)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.export.descriptions import (
    dataset_description,
    model_id,
    slug,
    source_jsonld,
    write_model_cards,
)
from matscreen.catalog.export.facts import RunFacts, licence_of, run_facts, source_licences
from matscreen.catalog.export.files import (
    OUTPUT_FILES,
    CrateFile,
    folder_outputs,
    gather_outputs,
)
from matscreen.catalog.export.prov import NAMESPACE, entity_urn
from matscreen.catalog.export.redaction import secret_values
from matscreen.catalog.export.subgraph import RunSubgraph, run_subgraph
from matscreen.catalog.store import Catalog
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import file_sha256

CRATE_METADATA = "ro-crate-metadata.json"
PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"


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
    facts: RunFacts,
    folder: Path,
    files: list[CrateFile],
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
        for licence in source_licences(facts.snapshots).values()
    ]
    if licences:
        root["license"] = licences if len(licences) > 1 else licences[0]

    person = None
    if facts.person is not None:
        person = _context(
            crate,
            f"#person-{slug(facts.person.name)}",
            {"@type": "Person", "name": facts.person.name},
        )
        root["creator"] = person

    versions = dict(run.software)
    requirements = [
        _context(
            crate,
            f"#software-{slug(package)}",
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
        node = source_jsonld(snapshot)
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
        properties: dict[str, Any] = {
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
        models.append(_context(crate, model_id(model), properties))

    entities = {}
    for item in files:
        path = folder / item.name
        properties = {
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
    card per model and ``dataset.jsonld``
    (:func:`~matscreen.catalog.export.descriptions.dataset_description`). Its metadata
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
    facts = run_facts(graph)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets = sorted(secret_values(), key=len, reverse=True)

    files: list[CrateFile] = []
    spec_file = None
    if facts.spec:
        spec_file = "spec.json"
        spec_text = json.dumps(facts.spec, indent=2, ensure_ascii=False) + "\n"
        write_atomically(out_dir / spec_file, spec_text.encode("utf-8"))
        specs = graph.of_kind("campaign_spec", direct_only=True)
        files.append(
            CrateFile(
                spec_file,
                "application/json",
                f"The campaign spec run {graph.run.id} followed (sha256 of its canonical "
                f"content {specs[0].attributes.get('sha256')})",
                entity_urn(specs[0].id),
            )
        )
    outputs, omitted = gather_outputs(facts, artifacts, out_dir, outputs_dir, secrets)
    files += outputs
    files += write_model_cards(facts, artifacts, out_dir)

    tables = {
        f.name: out_dir / f.name for f in outputs if f.name.endswith(".csv") and "/" not in f.name
    }
    dataset = out_dir / "dataset.jsonld"
    document = dataset_description(facts, tables)
    write_atomically(dataset, (json.dumps(document, indent=2) + "\n").encode("utf-8"))
    files.append(
        CrateFile(
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
    facts = run_facts(subgraph or run_subgraph(catalog, run_id, records=False))
    folder = Path(outputs_dir)
    files = folder_outputs(facts, folder, sorted(secret_values(), key=len, reverse=True))
    return _write_metadata(_build_crate(facts, folder, files, artifacts), folder)
