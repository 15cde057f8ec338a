"""Runs and models found by what they read, and the stored model a training can reuse."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from matscreen.catalog.nodes import Entity
from matscreen.catalog.queries.nodes import RunSummary, kind_runs, run_summaries
from matscreen.catalog.store import Catalog
from matscreen.catalog.walks import ordered_joins
from matscreen.tasks.errors import NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    """A trained model, its held-out metrics, and the runs and sources it came from."""

    id: str
    name: str
    target: str
    algorithm: str
    metrics: dict[str, Any]
    artifact_sha256: str
    created_at: str
    runs: list[str]
    sources: list[str]


def find_runs(
    catalog: Catalog,
    database_version: str | None = None,
    source: str | None = None,
    snapshot_sha256: str | None = None,
    model_sha256: str | None = None,
    spec: str | None = None,
    status: str | None = None,
) -> list[RunSummary]:
    """Campaign runs that read a given source snapshot or produced a given model.

    Every filter given must hold; with none, every run is listed.

    Parameters
    ----------
    database_version
        A database release as the source reported it (e.g. Materials Project's).
    source
        A source name as in the campaign spec, or a source kind (``mp``, ``csv_cif`` …).
    snapshot_sha256
        The sha256 of what was read (the file's bytes), or its first 8 or more characters.
    model_sha256
        The sha256 of a model file (``artifact_sha256``), or a model's entity id; a prefix
        of 8 or more characters will do.
    spec
        The campaign spec's name.
    status
        ``running``, ``completed``, ``failed``, ``interrupted`` or ``crashed``.

    Returns
    -------
    list of RunSummary
        By start time.

    Raises
    ------
    NotFoundError
        If a sha256 prefix is shorter than 8 characters.
    """
    for given in (snapshot_sha256, model_sha256):
        if given is not None and len(given) < 8:
            raise NotFoundError(f"sha256 prefix {given!r} is too short: give 8 characters or more")
    with ordered_joins(catalog) as conn:
        selected: set[str] | None = None
        if any(v is not None for v in (database_version, source, snapshot_sha256)):
            snapshots = kind_runs(conn, ["source_snapshot"])
            wanted = {
                e.id
                for e in catalog.get_entities(sorted({ref.id for _, ref, _ in snapshots}))
                if _snapshot_matches(e, database_version, source, snapshot_sha256)
            }
            selected = {run for run, ref, _ in snapshots if ref.id in wanted}
        if model_sha256 is not None:
            models = kind_runs(conn, ["model"])
            wanted = {
                e.id
                for e in catalog.get_entities(sorted({ref.id for _, ref, _ in models}))
                if e.id.startswith(model_sha256)
                or str(e.attributes.get("artifact_sha256", "")).startswith(model_sha256)
            }
            runs = {run for run, ref, _ in models if ref.id in wanted}
            selected = runs if selected is None else selected & runs
        if selected is None:
            selected = {
                row[0]
                for row in conn.execute(text("SELECT id FROM activities WHERE parent_id IS NULL"))
            }
        found = run_summaries(conn, selected)
    return [
        run
        for run in found
        if (spec is None or run.spec == spec) and (status is None or run.status == status)
    ]


def _snapshot_matches(
    snapshot: Entity, database_version: str | None, source: str | None, sha256: str | None
) -> bool:
    a = snapshot.attributes
    return (
        (database_version is None or a.get("database_version") == database_version)
        and (source is None or source in (a.get("source"), a.get("kind"), snapshot.name))
        and (sha256 is None or str(a.get("sha256", "")).startswith(sha256))
    )


def find_models(
    catalog: Catalog, source: str | None = None, target: str | None = None
) -> list[ModelSummary]:
    """Models trained on data from a source, or on a target property.

    A model's sources are the sources its runs read (a campaign trains on every record it
    read, from all of its sources).

    Parameters
    ----------
    source
        A source name as in the campaign spec, or a source kind.
    target
        The predicted property (``band_gap``).

    Returns
    -------
    list of ModelSummary
        Oldest first.
    """
    with ordered_joins(catalog) as conn:
        model_runs = kind_runs(conn, ["model"])
        snapshot_runs = kind_runs(conn, ["source_snapshot"])
    snapshots = {e.id: e for e in catalog.get_entities(sorted({r.id for _, r, _ in snapshot_runs}))}
    read_by: dict[str, set[str]] = {}
    for run, ref, _ in snapshot_runs:
        read_by.setdefault(run, set()).add(ref.id)
    runs_of: dict[str, set[str]] = {}
    for run, ref, _ in model_runs:
        runs_of.setdefault(ref.id, set()).add(run)
    found = []
    for model in sorted(catalog.get_entities(sorted(runs_of)), key=lambda e: (e.created_at, e.id)):
        a = model.attributes
        read = [snapshots[i] for run in runs_of[model.id] for i in read_by.get(run, ())]
        if target is not None and a.get("target") != target:
            continue
        if source is not None and not any(_snapshot_matches(s, None, source, None) for s in read):
            continue
        found.append(
            ModelSummary(
                id=model.id,
                name=model.name,
                target=a.get("target", ""),
                algorithm=a.get("algorithm", ""),
                metrics=a.get("metrics", {}),
                artifact_sha256=a.get("artifact_sha256", ""),
                created_at=model.created_at,
                runs=sorted(runs_of[model.id]),
                sources=sorted({s.name for s in read}),
            )
        )
    return found


def previous_run(catalog: Catalog, run_id: str, campaign: str) -> RunSummary | None:
    """The latest completed run of the same campaign spec that started before ``run_id``."""
    runs = find_runs(catalog, spec=campaign)  # by start time
    position = next((n for n, run in enumerate(runs) if run.id == run_id), len(runs))
    earlier = [run for run in runs[:position] if run.status == "completed"]
    return earlier[-1] if earlier else None


def models_trained_as(catalog: Catalog, fingerprint: str) -> list[tuple[str, str]]:
    """``(model entity id, artifact sha256)`` of every stored model whose training had this
    fingerprint (see :func:`matscreen.tasks.models.evaluation.training_fingerprint`), in
    the order they were stored."""
    return [
        (model.id, model.attributes["artifact_sha256"])
        for model in catalog.find_entities("model")
        if model.attributes.get("training_fingerprint") == fingerprint
    ]
