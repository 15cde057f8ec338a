"""How a campaign run is written into the catalog: one method per step of the flow.

This module decides which entities a step produces, what they are derived from and which
artifacts hold their bulk; the flow's driver calls it with the plain results of its tasks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, NamedTuple

import pandas as pd

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.liveness import PID_PARAMETER
from matscreen.catalog.nodes import Activity, Edge, Entity
from matscreen.catalog.store import Catalog
from matscreen.tasks.hashing import content_hash
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.tables import frame_to_parquet, per_row_frame


class RecordedIngest(NamedTuple):
    """What :meth:`CampaignRecorder.ingest` stored for one source read."""

    snapshot_id: str
    record_ids: dict[str, str]
    new_records: int
    #: Entity ids of the read's failed rows (``record_error``).
    error_ids: tuple[str, ...] = ()


class CampaignRecorder:
    """Writes one campaign run's activities, entities and edges.

    Parameters
    ----------
    catalog, artifacts
        Where to write.
    run_id
        The campaign run's id (the Prefect flow run id when run by Prefect).
    name
        The flow's name.
    parameters
        The run's parameters (spec path, output folder); never secrets.
    software
        Package versions; ``git_commit`` the project's commit if known.
    user
        Name of the person running the campaign.
    """

    def __init__(
        self,
        catalog: Catalog,
        artifacts: ArtifactStore,
        run_id: str,
        name: str,
        parameters: dict[str, Any],
        software: dict[str, str],
        git_commit: str | None,
        user: str,
        host: str,
    ) -> None:
        self.catalog = catalog
        self.artifacts = artifacts
        self.run_id = run_id
        self.software = software
        self.git_commit = git_commit
        self.host = host
        self.spec_id: str | None = None
        self.software_agent = catalog.ensure_agent(
            "software", f"matscreen {software.get('matscreen', '')}".strip(), software
        )
        self.user_agent = catalog.ensure_agent("person", user, {})
        catalog.mark_crashed()  # runs of this host that died before closing their record
        catalog.start_activity(
            Activity(
                id=run_id,
                kind="flow_run",
                name=name,
                started_at=utc_now(),
                prefect_run_id=run_id,
                parameters={**parameters, PID_PARAMETER: os.getpid()},
                host=host,
                software=software,
                git_commit=git_commit,
            ),
            agents=[self.software_agent, self.user_agent],
        )

    # -- helpers --------------------------------------------------------------------------
    def _activity(
        self,
        run: RunInfo,
        parameters: dict[str, Any] | None = None,
        parent_id: str | None = None,
    ) -> Activity:
        # A Prefect task run keeps its Prefect id; work the driver did itself is a step.
        return Activity(
            id=run.task_run_id or str(uuid.uuid4()),
            kind="task_run" if run.task_run_id else "step",
            name=run.name,
            started_at=run.started_at,
            ended_at=run.ended_at,
            status="completed",
            prefect_run_id=run.task_run_id,
            parent_id=parent_id or self.run_id,
            parameters={**(parameters or {}), "host_pid": run.pid},
            host=run.host,
            software=self.software,
            git_commit=self.git_commit,
        )

    def _store_frame(self, frame: pd.DataFrame, row_group_size: int | None = None) -> str:
        return self.artifacts.put_bytes(frame_to_parquet(frame, row_group_size))

    # -- steps ----------------------------------------------------------------------------
    def spec(self, spec: dict[str, Any], sha256: str, run: RunInfo) -> str:
        """Record the campaign spec the run follows; return its entity id."""
        entity = Entity.new("campaign_spec", spec["name"], {"spec": spec, "sha256": sha256})
        self.catalog.record_step(self._activity(run), [entity])
        self.spec_id = entity.id
        return entity.id

    def ingest(
        self, result: Any, run: RunInfo, known: dict[str, str] | None = None
    ) -> RecordedIngest:
        """Record one source read: snapshot, structure records and failed rows.

        A record marked ``duplicate_of`` another is linked to it by ``alternateOf``; the
        other record's entity is looked up in this read or in ``known`` (the ids returned
        by earlier reads of the same run).

        Returns
        -------
        RecordedIngest
            The snapshot's entity id, ``{record id: entity id}`` and how many of the
            records were new to the catalog.
        """
        # A snapshot is identified by what was read (location, content hash, query), not by
        # when: reading the same bytes again reuses it, and the time of each read is kept
        # on the reading activity.
        attributes = asdict(result.snapshot)
        retrieved_at = attributes.pop("retrieved_at")
        snapshot = Entity.new("source_snapshot", result.snapshot.source, attributes)
        records, failures, derived = _read_entities(result.records, result.failures, known)
        derived += [Edge("wasDerivedFrom", e.id, snapshot.id) for e in records + failures]
        new = self.catalog.record_step(
            self._activity(run, {"source": result.snapshot.source, "retrieved_at": retrieved_at}),
            [snapshot, *records, *failures],
            derived=derived,
        )
        return RecordedIngest(
            snapshot.id, {e.name: e.id for e in records}, sum(e.id in new for e in records)
        )

    def ingest_chunk(
        self,
        source: str,
        chunk: int,
        records: Sequence[Any],
        failures: Sequence[Any],
        run: RunInfo,
        known: dict[str, str] | None = None,
    ) -> RecordedIngest:
        """Record one chunk of a streamed source read: its records and failed rows.

        The records are linked to the read's snapshot by :meth:`source_read` when the read
        has ended (a snapshot's content hash is known only then). Returns the chunk's
        ``{record id: entity id}`` (``snapshot_id`` empty), how many records were new to
        the catalog, and the entity ids of its failures.
        """
        entities, errors, derived = _read_entities(records, failures, known)
        new = self.catalog.record_step(
            self._activity(run, {"source": source, "chunk": chunk}),
            [*entities, *errors],
            derived=derived,
        )
        return RecordedIngest(
            "",
            {e.name: e.id for e in entities},
            sum(e.id in new for e in entities),
            tuple(e.id for e in errors),
        )

    def source_read(self, snapshot: Any, run: RunInfo, entity_ids: Sequence[str]) -> str:
        """Record the snapshot of a streamed read whose chunks :meth:`ingest_chunk` stored,
        each of their records and failures derived from it; return the snapshot's id."""
        attributes = asdict(snapshot)
        retrieved_at = attributes.pop("retrieved_at")
        entity = Entity.new("source_snapshot", snapshot.source, attributes)
        self.catalog.record_step(
            self._activity(run, {"source": snapshot.source, "retrieved_at": retrieved_at}),
            [entity],
            derived=[Edge("wasDerivedFrom", i, entity.id) for i in entity_ids],
        )
        return entity.id

    def split(self, split: Any, run: RunInfo, snapshot_ids: Sequence[str]) -> str:
        """Record the held-out split; return its entity id."""
        entity = Entity.new("data_split", f"{split.method} seed={split.seed}", asdict(split))
        self.catalog.record_step(
            self._activity(run),
            [entity],
            derived=[Edge("wasDerivedFrom", entity.id, s) for s in snapshot_ids],
        )
        return entity.id

    def features(
        self,
        table: Any,
        runs: Sequence[RunInfo],
        config: dict[str, Any],
        citations: list[str],
        record_ids: dict[str, str],
        failures: Sequence[Any] = (),
        reused: int = 0,
    ) -> str:
        """Record the featurize step, its batch task runs and the feature table.

        The table's bulk goes to the artifact store as Parquet; structures that failed to
        featurize (``failures``, RecordFailure-like) become ``record_error`` entities
        derived from their records.
        """
        sha = self._store_frame(table.frame)
        config_sha = content_hash(config)
        entity = Entity.new(
            "feature_table",
            f"{config['preset'] or 'custom'}:{sha[:12]}",
            {
                "preset": config["preset"],
                "config": config,
                "config_sha256": config_sha,
                "labels": list(table.frame.columns),
                "n_rows": len(table.frame),
                "n_failures": len(table.failures),
                "artifact_sha256": sha,
                "format": "parquet",
                "citations": citations,
            },
        )
        errors = [
            Entity.new("record_error", f.id, {**asdict(f), "config_sha256": config_sha})
            for f in failures
        ]
        step = Activity(
            id=str(uuid.uuid4()),
            kind="step",
            name="featurize",
            started_at=min((r.started_at for r in runs), default=utc_now()),
            ended_at=utc_now(),
            status="completed",
            parent_id=self.run_id,
            parameters={
                "preset": config["preset"],
                "batches": len(runs),
                "structures_from_store": reused,
            },
            host=self.host,
            software=self.software,
            git_commit=self.git_commit,
        )
        derived = [Edge("wasDerivedFrom", entity.id, record_ids[i]) for i in table.frame.index]
        derived += [Edge("wasDerivedFrom", e.id, record_ids[e.name]) for e in errors]
        self.catalog.record_step(
            step,
            [entity, *errors],
            derived=derived,
            children=[self._activity(run, parent_id=step.id) for run in runs],
        )
        return entity.id

    def exclusions(
        self, failures: Sequence[Any], run: RunInfo, record_ids: dict[str, str]
    ) -> list[str]:
        """Record the records a step left out (RecordFailure-like: stage and reason) as
        ``record_error`` entities derived from their records; return their ids."""
        errors = [Entity.new("record_error", f.id, asdict(f)) for f in failures]
        if not errors:
            return []
        derived = [Edge("wasDerivedFrom", e.id, record_ids[e.name]) for e in errors]
        self.catalog.record_step(self._activity(run), errors, derived=derived)
        return [e.id for e in errors]

    def model(
        self,
        trained: Any,
        predictions: Any,
        metrics: dict[str, Any],
        run: RunInfo,
        split_id: str,
        features_id: str,
        training_fingerprint: str | None = None,
        reused: bool = False,
        kept_scores: str | None = None,
    ) -> tuple[str, str]:
        """Record one fitted model with its training set and held-out predictions.

        ``training_fingerprint`` (see
        :func:`~matscreen.tasks.models.evaluation.training_fingerprint`) is kept with the
        model so that a later run with the same training set can find it; ``reused`` marks
        a step that took the stored model instead of fitting it again; ``kept_scores``
        names the kept scores (:mod:`~matscreen.catalog.scores`) whose baselines,
        importance and calibration curve it took instead of computing them.

        Returns
        -------
        (model id, prediction set id)
        """
        training = Entity.new(
            "training_set",
            f"{trained.target}:{content_hash(trained.train_ids)[:12]}",
            {
                "target": trained.target,
                "ids": trained.train_ids,
                "n_rows": len(trained.train_ids),
                "label_mean": trained.train_label_mean,
            },
        )
        extra = {"training_fingerprint": training_fingerprint} if training_fingerprint else {}
        model = self._model_entity(trained, clip_min=trained.clip_min, metrics=metrics, **extra)
        prediction_sha = self._store_frame(per_row_frame(predictions))
        prediction_set = Entity.new(
            "prediction_set",
            f"{trained.target}:{prediction_sha[:12]}",
            {
                "target": trained.target,
                "n_rows": len(predictions.ids),
                "baseline": predictions.baseline,
                "artifact_sha256": prediction_sha,
                "format": "parquet",
            },
        )
        self.catalog.record_step(
            self._activity(
                run,
                {"target": trained.target, "reused_model": reused, "kept_scores": kept_scores},
            ),
            [training, model, prediction_set],
            used=[split_id, features_id],
            derived=[
                Edge("wasDerivedFrom", training.id, split_id),
                Edge("wasDerivedFrom", training.id, features_id),
                Edge("wasDerivedFrom", model.id, training.id),
                Edge("wasDerivedFrom", prediction_set.id, model.id),
                Edge("wasDerivedFrom", prediction_set.id, features_id),
                Edge("wasDerivedFrom", prediction_set.id, split_id),
            ],
        )
        return model.id, prediction_set.id

    def _model_entity(self, trained: Any, **extra: Any) -> Entity:
        """A model entity for a fitted model; its document goes to the artifact store."""
        model_sha = self.artifacts.put_bytes(trained.model_json)
        return Entity.new(
            "model",
            f"{trained.target}:{trained.algorithm}:{model_sha[:12]}",
            {
                "target": trained.target,
                "algorithm": trained.algorithm,
                "kind": getattr(trained, "kind", "regressor"),
                "params": trained.params,
                "n_features": len(trained.feature_labels),
                "feature_labels_sha256": content_hash(trained.feature_labels),
                "versions": trained.versions,
                "artifact_sha256": model_sha,
                "format": getattr(trained, "artifact_format", "xgboost-json"),
                **extra,
            },
        )

    def ranking(
        self,
        ranking: pd.DataFrame,
        run: RunInfo,
        criteria: list[dict[str, Any]],
        prediction_ids: Sequence[str],
        method: dict[str, Any] | None = None,
    ) -> str:
        """Record the ranking of the candidates; return its entity id.

        ``method`` is the campaign's ranking spec (method, diversity, suggestions). The
        ranking derives from its prediction sets (which derive from the feature tables,
        which derive from each record) and names no record itself: which records it
        ranked is its table's ``id`` column, not a million edges. The table is stored in
        row groups of :data:`RANKING_ROW_GROUP` rows.
        """
        sha = self._store_frame(ranking.set_index("id"), RANKING_ROW_GROUP)
        entity = Entity.new(
            "ranking",
            f"ranking:{sha[:12]}",
            {
                "method": (method or {}).get("method", "margin"),
                "ranking_spec": method,
                "criteria": criteria,
                "n_candidates": len(ranking),
                "n_meeting_criteria": int(ranking["meets_criteria"].sum()),
                "artifact_sha256": sha,
                "format": "parquet",
            },
        )
        derived = [Edge("wasDerivedFrom", entity.id, p) for p in prediction_ids]
        if self.spec_id is not None:
            derived.append(Edge("wasDerivedFrom", entity.id, self.spec_id))
        self.catalog.record_step(
            self._activity(run), [entity], used=prediction_ids, derived=derived
        )
        return entity.id

    def report(
        self,
        files: dict[str, dict[str, Any]],
        run: RunInfo,
        ranking_id: str,
        model_ids: Sequence[str],
    ) -> str:
        """Record the output files of the run; return the report entity's id."""
        entity = Entity.new("report", f"report:{self.run_id}", {"run": self.run_id, "files": files})
        derived = [Edge("wasDerivedFrom", entity.id, i) for i in (ranking_id, *model_ids)]
        derived.append(Edge("wasAttributedTo", entity.id, self.user_agent))
        self.catalog.record_step(self._activity(run), [entity], derived=derived)
        return entity.id

    def finish(self, status: str) -> None:
        """Close the campaign run's activity with its final status."""
        self.catalog.finish_activity(self.run_id, status)

    @contextmanager
    def running(
        self, interruptions: tuple[type[BaseException], ...] = (KeyboardInterrupt,)
    ) -> Iterator[CampaignRecorder]:
        """Close the run's record: completed, interrupted (Ctrl-C, or one of
        ``interruptions``, e.g. the orchestrator's termination signal) or failed."""
        status = "failed"
        try:
            yield self
            status = "completed"
        except interruptions:
            status = "interrupted"
            raise
        finally:
            self.finish(status)


# -- models applied to new structures (``matscreen predict``) ---------------------------------
#: Rows per Parquet row group of a stored ranking: a candidate's lineage decodes the ids and
#: then one group, not the whole table of a million candidates.
RANKING_ROW_GROUP = 50_000


def _read_entities(
    records: Sequence[Any], failures: Sequence[Any], known: dict[str, str] | None
) -> tuple[list[Entity], list[Entity], list[Edge]]:
    """Entities of a read's records and failures, and the ``alternateOf`` link of every
    record marked ``duplicate_of`` another (looked up among these or in ``known``)."""
    # Shallow field dicts: a record holds no nested dataclass, and asdict's deep copy of
    # every structure would cost more than the catalog write itself.
    entities = [
        Entity.new("structure_record", r.id, r.field_values(), r.fields_json) for r in records
    ]
    errors = [Entity.new("record_error", f.id, asdict(f)) for f in failures]
    here = {e.name: e.id for e in entities}
    earlier = known or {}
    links = []
    for record, entity in zip(records, entities, strict=True):
        first = record.duplicate_of
        if first is not None:
            links.append(Edge("alternateOf", entity.id, here.get(first) or earlier[first]))
    return entities, errors, links
