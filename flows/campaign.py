"""The screening campaign flow: ingest, split, featurize, train, rank, report."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.export import write_run_crate
from matscreen.catalog.queries import changes_since_previous, stored_model
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.flows.featurize import featurize_and_record, model_featurization
from matscreen.flows.ingest import ingest_and_record
from matscreen.flows.runtime import git_commit, software_versions
from matscreen.flows.settings import Settings
from matscreen.tasks.dataset import (
    candidate_arrays,
    labels_of,
    training_arrays,
)
from matscreen.tasks.featurize import describe, featurization_config
from matscreen.tasks.models.evaluation import training_fingerprint
from matscreen.tasks.rank import (
    add_intervals,
    candidate_frame,
    screening_summary,
    screening_validation,
    shortlist_with,
    suggest_with,
)
from matscreen.tasks.report.artifacts import publish_artifacts
from matscreen.tasks.report.campaign import (
    campaign_report,
    metrics_document,
    model_summary,
    run_counts,
)
from matscreen.tasks.report.outputs import with_space_groups, write_outputs
from matscreen.tasks.runinfo import StepTimer, traced
from matscreen.tasks.sources.dedup import unique_records
from matscreen.tasks.spec import load_spec, with_suggestions
from matscreen.tasks.split import record_groups
from matscreen.tasks.steps import (
    choose_split_task,
    evaluate_model_task,
    fit_surrogate_task,
    rank_candidates_task,
)


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
    software = software_versions()
    featurization = spec.featurization
    config = featurization_config(featurization)

    with Catalog(settings.catalog_url) as catalog:
        artifacts = ArtifactStore(settings.artifact_dir)
        recorder = CampaignRecorder(
            catalog,
            artifacts,
            run_id,
            "screen-candidates",
            {"spec_path": str(Path(spec_path).resolve()), "output_dir": str(out.resolve())},
            software,
            git_commit(),
            getpass.getuser(),
            socket.gethostname(),
        )
        with recorder.running():
            recorder.spec(spec.model_dump(mode="json"), spec.fingerprint(), loaded.run)

            with timer.step("ingest"):
                ingested = ingest_and_record(spec.sources, recorder, settings.source_state_dir)
            results, snapshot_ids = ingested.results, ingested.snapshot_ids
            record_ids = ingested.record_ids
            records = unique_records(results)

            with timer.step("split"):
                groups = record_groups(records, spec.split.method)
                split = choose_split_task([r.id for r in records], spec.split, groups)
                split_id = recorder.split(split.value, split.run, snapshot_ids)
            train_ids, test_ids = split.value.train_ids, split.value.test_ids

            with timer.step("featurize"):
                table, features_id, _ = featurize_and_record(
                    records, featurization, settings, recorder, record_ids
                )
            columns = list(table.frame.columns)

            with timer.step("train"):
                labels = {m.target: labels_of(records, m.target) for m in spec.models}
                saved_featurization = model_featurization(featurization)
                futures, fingerprints, reused = [], {}, {}
                for model in spec.models:
                    train = training_arrays(table.frame, labels[model.target], train_ids)
                    test = candidate_arrays(table.frame, labels[model.target], test_ids)
                    train_groups = [groups[i] for i in train[0]] if groups else None
                    fingerprint = training_fingerprint(
                        model, columns, train, spec.split.seed, train_groups, saved_featurization
                    )
                    fingerprints[model.target] = fingerprint
                    earlier = stored_model(catalog, artifacts, fingerprint)
                    if earlier is not None:
                        # The same training set, spec and software: the stored fit is reused.
                        reused[model.target] = earlier[0]
                        futures.append(
                            evaluate_model_task.submit(
                                earlier[1], columns, train, test, spec.split.seed
                            )
                        )
                        continue
                    futures.append(
                        fit_surrogate_task.submit(
                            model,
                            columns,
                            train,
                            test,
                            spec.split.seed,
                            train_groups,
                            saved_featurization,
                        )
                    )
                fits = [future.result() for future in futures]
                fitted = {f.value.model.target: f.value for f in fits}
                stored = [
                    recorder.model(
                        f.value.model,
                        f.value.record,
                        f.value.evaluation.metrics,
                        f.run,
                        split_id,
                        features_id,
                        fingerprints[f.value.model.target],
                        reused=f.value.model.target in reused,
                    )
                    for f in fits
                ]
            metrics = {t: f.evaluation.metrics for t, f in fitted.items()}
            held_out = {t: f.record for t, f in fitted.items()}

            with timer.step("rank"):
                ids = held_out[spec.models[0].target].ids
                formulas = {r.id: r.formula for r in records}
                candidates = candidate_frame(
                    ids, [formulas[i] for i in ids], {t: p.y_pred for t, p in held_out.items()}
                )
                levels = add_intervals(candidates, held_out)
                ranked = rank_candidates_task(
                    candidates, list(spec.criteria), spec.ranking, levels or None
                )
                mmr = spec.ranking.diversity.mmr_lambda is not None
                shortlist = shortlist_with(
                    ranked.value, spec.shortlist_size, spec.ranking, table.frame if mmr else None
                )
                suggestions = suggest_with(ranked.value, spec.ranking, shortlist.ids)
                # The recorded ranking carries the shortlist choice (position, skip reason).
                ranking = shortlist.table
                ranking_id = recorder.ranking(
                    ranking,
                    ranked.run,
                    [c.model_dump() for c in spec.criteria],
                    [prediction_id for _, prediction_id in stored],
                    record_ids,
                    method=spec.ranking.model_dump(mode="json"),
                )

            with timer.step("report"):
                structures = {r.id: r.structure for r in records}
                shortlisted = with_space_groups(shortlist.frame(), structures)
                if suggestions is not None:
                    suggestions = with_space_groups(suggestions, structures)
                changes = changes_since_previous(catalog, artifacts, run_id, spec.name)
                screening = screening_summary(
                    ranked.value, labels, list(spec.criteria), spec.shortlist_size, shortlist.ids
                )
                screening["validation"] = screening_validation(
                    ranked.value, labels, list(spec.criteria)
                )
                counts = run_counts(results, table, split.value, ranked.value)
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
                html = campaign_report(
                    spec,
                    document,
                    results,
                    records,
                    table,
                    held_out,
                    ranking,
                    shortlisted,
                    describe(config, len(columns)),
                    software,
                    changes,
                    suggestions=suggestions,
                )
                written = traced(write_outputs)(
                    out, ranking, shortlisted, document, html, suggestions
                )
                publish_artifacts(shortlisted, document)
                recorder.report(
                    written.value, written.run, ranking_id, [model_id for model_id, _ in stored]
                )
        # After the run is closed, so that the crate holds its end time and final status.
        crate = write_run_crate(catalog, artifacts, run_id, out)

    return {
        "run_id": run_id,
        "output_dir": str(out.resolve()),
        "files": {**written.value, "crate": {"path": str(crate)}},
        "metrics": document,
        "step_seconds": dict(timer.seconds),
    }
