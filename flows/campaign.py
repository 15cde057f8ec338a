"""The screening campaign flow: ingest, split, featurize, train, rank, report."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from matscreen.catalog import Catalog
from matscreen.catalog.export import write_run_crate
from matscreen.catalog.prediction_recorder import PredictionRecorder
from matscreen.catalog.queries import changes_since_previous
from matscreen.catalog.scores import ScoreCache
from matscreen.flows.artifacts import publish_artifacts
from matscreen.flows.candidates import CandidateScreen, record_loader
from matscreen.flows.fitting import fit_models, split_and_featurize
from matscreen.flows.heap import rare_collections
from matscreen.flows.ingest import ingest_and_record
from matscreen.flows.placement import HullPlacement, place_on_hull
from matscreen.flows.runtime import interruptions, run_recorder
from matscreen.flows.settings import Settings
from matscreen.tasks.dataset import labels_of
from matscreen.tasks.featurize import describe, featurization_config
from matscreen.tasks.models.evaluation import FittedSurrogate
from matscreen.tasks.pools import assign_pools
from matscreen.tasks.rank import (
    screening_summary,
    screening_validation,
    shortlist_within,
    suggest_with,
)
from matscreen.tasks.report.campaign import (
    all_failures,
    campaign_report,
    metrics_document,
    model_summary,
    run_counts,
)
from matscreen.tasks.report.handoff import JSONL_NAME, STRUCTURES_DIR, write_structures
from matscreen.tasks.report.outputs import with_space_groups, write_outputs
from matscreen.tasks.report.pictures import structure_picture_png
from matscreen.tasks.runinfo import RunInfo, StepTimer, traced, utc_now
from matscreen.tasks.screen import (
    TrainedModels,
    expected_hits,
    pool_table,
    reported_values,
    training_phases,
)
from matscreen.tasks.sources.dedup import Deduplicator
from matscreen.tasks.sources.records import IngestResult
from matscreen.tasks.spec import HULL_PROPERTY, load_spec, with_suggestions
from matscreen.tasks.steps import rank_candidates_task

#: Shortlisted candidates whose unit cells the report pictures.
PICTURED = 8


@flow(name="screen-candidates")
def screen_candidates(
    spec_path: str, output_dir: str | None = None, suggest: int | None = None
) -> dict[str, Any]:
    """Run a screening campaign end to end and record every step in the catalog.

    Parameters
    ----------
    spec_path
        The campaign spec (YAML).
    output_dir
        Where to write shortlist.csv, ranking.csv, metrics.json and report.html; default
        ``runs/<run id>``.
    suggest
        Number of suggested next experiments (suggestions.csv); sets the spec's
        ``ranking.suggest.n`` for this run. None keeps the spec as written.

    Returns
    -------
    dict
        ``run_id``, ``output_dir``, ``files``, ``metrics`` (the metrics document) and
        ``step_seconds``.
    """
    settings = Settings()
    loaded = traced(load_spec)(Path(spec_path), settings.data_dir)
    # The effective spec, with ``suggest`` applied: it is the one recorded below, so a
    # reproduction of this run repeats the suggestions.
    spec = with_suggestions(loaded.value, suggest)
    run_id = str(flow_run.id)
    out = Path(output_dir) if output_dir else Path("runs") / run_id
    timer = StepTimer()
    featurization = spec.featurization
    config = featurization_config(featurization)

    with Catalog(settings.catalog_url) as catalog:
        parameters = {
            "spec_path": str(Path(spec_path).resolve()),
            "output_dir": str(out.resolve()),
        }
        recorder = run_recorder(
            catalog, settings, "screen-candidates", parameters, PredictionRecorder
        )
        artifacts, software = recorder.artifacts, recorder.software
        with recorder.running(interruptions()), rare_collections():
            recorder.spec(spec.model_dump(mode="json"), spec.fingerprint(), loaded.run)
            targets = [m.target for m in spec.models]

            with timer.step("ingest"):
                # Sources read whole: what the models learn from, and 'both' sources, whose
                # records are also candidates. 'screen' sources are streamed after training.
                whole = [s for s in spec.sources if s.pool != "screen"]
                streamed = [s for s in spec.sources if s.pool == "screen"]
                seen = Deduplicator()
                ingested = ingest_and_record(whole, recorder, settings.source_state_dir, seen=seen)
                record_ids = ingested.record_ids
                sorted_pools = traced(assign_pools)(
                    ingested.results, {s.name: s.pool for s in whole}, targets
                )
                pools = replace(
                    sorted_pools.value,
                    screen_sources=tuple(s.name for s in spec.sources if s.pool != "train"),
                )
                recorder.exclusions(pools.excluded, sorted_pools.run, record_ids)
                if not streamed:
                    pools.check_candidates()
            # A record of a 'both' source is in both pools: featurized once.
            records = list({r.id: r for r in pools.training + pools.candidates}.values())
            by_id = {r.id: r for r in records}
            seen.loader = record_loader(by_id, record_ids, catalog)
            prepared = split_and_featurize(
                pools.training,
                records,
                spec.split,
                featurization,
                settings,
                recorder,
                record_ids,
                ingested.snapshot_ids,
                timer,
            )
            table, features_id = prepared.table, prepared.features_id
            train_ids = prepared.split.train_ids
            if not streamed:
                pools.check_candidates(set(table.frame.index))
            columns = list(table.frame.columns)
            labels = {t: labels_of(records, t) for t in targets}

            with timer.step("train"):
                trained = fit_models(
                    spec.models,
                    prepared,
                    labels,
                    spec.split.seed,
                    featurization,
                    catalog,
                    artifacts,
                    recorder,
                    ScoreCache(settings.score_dir),
                )
            fitted, stored, reused = trained.models, trained.stored, trained.reused
            metrics = {t: f.evaluation.metrics for t, f in fitted.items()}
            held_out = {t: f.record for t, f in fitted.items()}
            model_ids = {t: model_id for t, (model_id, _) in zip(fitted, stored, strict=True)}
            hull = _hull_placement(spec, settings, recorder, by_id, labels, train_ids, fitted)

            with timer.step("stability"):
                validation_table = pool_table(by_id, held_out)
                if hull is not None:
                    validation_table = place_on_hull(validation_table, by_id, hull, spec.stability)

            screen = CandidateScreen(
                spec,
                settings,
                recorder,
                record_ids,
                by_id,
                seen,
                pools,
                TrainedModels(fitted, model_ids, frozenset(train_ids)),
                hull,
                timer,
            )
            if pools.retrospective:
                screened = None
                screen_table = validation_table
                prediction_ids = [prediction_id for _, prediction_id in stored]
                recorder.exclusions(screen_table.failures, _step_run("hull-stability"), record_ids)
            else:
                screen.screen_featurized(pools.candidates, table.frame, features_id)
                screen.screen_stream(streamed)
                screened = screen.finish()
                screen_table = screened.table
                prediction_ids = screened.prediction_ids
            snapshots = [r.snapshot for r in ingested.results] + (
                screened.snapshots if screened else []
            )

            with timer.step("rank"):
                criteria = list(spec.criteria)
                properties = [c.property for c in criteria]
                validated = rank_candidates_task(
                    validation_table.frame, criteria, spec.ranking, validation_table.levels or None
                )
                ranked = (
                    validated
                    if pools.retrospective
                    else rank_candidates_task(
                        screen_table.frame, criteria, spec.ranking, screen_table.levels or None
                    )
                )
                if screened is not None:
                    # Every candidate's row is in the ranking now: the screen's table, as
                    # large, is let go (its failures are kept).
                    screen_table = replace(screen_table, frame=screen_table.frame.iloc[:0])
                    screened.table = screen_table
                shortlist = shortlist_within(
                    ranked.value,
                    spec.shortlist_size,
                    spec.ranking,
                    lambda ids: screen.features(ids, table.frame, config),
                )
                suggestions = suggest_with(ranked.value, spec.ranking, shortlist.ids)
                # The recorded ranking carries the shortlist choice (position, skip reason).
                ranking = shortlist.table
                ranking_id = recorder.ranking(
                    ranking,
                    ranked.run,
                    [c.model_dump() for c in criteria],
                    prediction_ids,
                    method=spec.ranking.model_dump(mode="json"),
                )

            with timer.step("report"):
                wanted = list(shortlist.ids)
                if suggestions is not None:
                    wanted += [str(i) for i in suggestions["id"]]
                structures = screen.structures(list(dict.fromkeys(wanted)))
                shortlisted = with_space_groups(shortlist.frame(), structures)
                if suggestions is not None:
                    suggestions = with_space_groups(suggestions, structures)
                changes = changes_since_previous(catalog, artifacts, run_id, spec.name)
                validation_labels = reported_values(validated.value, properties)
                screening = screening_summary(
                    ranked.value,
                    reported_values(ranked.value, properties),
                    criteria,
                    spec.shortlist_size,
                    shortlist.ids,
                )
                screening["validation"] = screening_validation(
                    validated.value, validation_labels, criteria
                )
                screening["held_out"] = screening_summary(
                    validated.value, validation_labels, criteria, spec.shortlist_size
                )
                screening["retrospective"] = pools.retrospective
                screening["expected_hits"] = expected_hits(ranked.value)
                counts = run_counts(
                    ingested.results,
                    table,
                    prepared.split,
                    ranked.value,
                    pools,
                    screen_table.failures,
                    screened.counts if screened else None,
                )
                document = metrics_document(
                    run_id,
                    spec,
                    metrics,
                    spec.units(),
                    screening,
                    counts,
                    timer.seconds,
                    {t: model_summary(f, reused.get(t)) for t, f in fitted.items()},
                    changes,
                )
                handoff = traced(write_structures)(
                    out, shortlisted, structures, record_ids, spec.units()
                )
                pictures = [
                    {
                        "rank": row["rank"],
                        "id": row["id"],
                        "formula": row["formula"],
                        "png": structure_picture_png(structures[row["id"]], candidate_id=row["id"]),
                    }
                    for row in shortlisted.head(PICTURED).to_dict(orient="records")
                ]
                failures = all_failures(ingested.results, records, table) + pools.excluded
                failures += screen_table.failures + (screened.failures if screened else [])
                html = campaign_report(
                    spec,
                    document,
                    snapshots,
                    held_out,
                    ranking,
                    shortlisted,
                    {
                        **describe(config, len(columns)),
                        "chosen_because": spec.featurization.chosen_because,
                    },
                    software,
                    changes,
                    suggestions=suggestions,
                    failures=failures,
                    pictures=pictures,
                    structure_files={
                        "folder": STRUCTURES_DIR,
                        "jsonl": f"{STRUCTURES_DIR}/{JSONL_NAME}",
                        "count": len(handoff.value),
                    },
                )
                written = traced(write_outputs)(
                    out,
                    ranking,
                    shortlisted,
                    document,
                    html,
                    suggestions,
                    validation=validated.value,
                )
                publish_artifacts(shortlisted, document)
                recorder.report(
                    {**written.value, **handoff.value},
                    written.run,
                    ranking_id,
                    [model_id for model_id, _ in stored],
                )
        # After the run is closed, so that the crate holds its end time and final status.
        crate = write_run_crate(catalog, artifacts, run_id, out)
        screen.forget()  # the run is finished: a re-run has nothing to resume

    return {
        "run_id": run_id,
        "output_dir": str(out.resolve()),
        "files": {**written.value, "crate": {"path": str(crate)}},
        "metrics": document,
        "step_seconds": dict(timer.seconds),
    }


def _step_run(name: str) -> RunInfo:
    """A run record for a step the flow itself performs (no task of its own)."""
    now = utc_now()
    return RunInfo(name, now, now, socket.gethostname(), os.getpid(), None)


def _hull_placement(
    spec: Any,
    settings: Settings,
    recorder: PredictionRecorder,
    by_id: dict[str, Any],
    labels: dict[str, dict[str, float | None]],
    train_ids: list[str],
    fitted: dict[str, FittedSurrogate],
) -> HullPlacement | None:
    """How this campaign places records against the hull; None without ``stability``."""
    stability = spec.stability
    if stability is None:
        return None
    energy = stability.formation_energy

    def record_read(read: Any) -> None:
        # A remote read of reference phases (the Materials Project) is a source snapshot
        # of the run like any other: its endpoint, query, database version and content hash.
        for snapshot in read.value.snapshots:
            recorder.ingest(IngestResult(snapshot, [], []), read.run)

    return HullPlacement(
        stability,
        training_phases(by_id, labels[energy], train_ids, stability.per),
        required=any(c.property == HULL_PROPERTY for c in spec.criteria),
        level=fitted[energy].record.level,
        state_dir=settings.source_state_dir,
        on_read=record_read,
    )
