"""Assemble the campaign report and metrics document from a run's plain results."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import pandas as pd

from matscreen.tasks.dataset import feature_failures
from matscreen.tasks.featurize.batch import FeatureTable
from matscreen.tasks.models.evaluation import FittedSurrogate
from matscreen.tasks.models.pipeline import DEFAULT_PARAMS
from matscreen.tasks.models.records import PredictionRecord
from matscreen.tasks.pools import Pools
from matscreen.tasks.rank.criteria import criterion_margin, prediction_column
from matscreen.tasks.rank.probability import SUCCESS_COLUMN, expected_funnel, property_ranges
from matscreen.tasks.report.html import (
    ReportContext,
    calibration_plot_png,
    parity_plot_png,
    render_report,
)
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.sources.records import (
    IngestResult,
    RecordFailure,
    SourceSnapshot,
    StructureRecord,
)
from matscreen.tasks.spec import CampaignSpec, CriterionSpec, ModelSpec, RankingSpec
from matscreen.tasks.split import DataSplit


def criterion_label(criterion: CriterionSpec) -> str:
    """Human form of a criterion, the property first where it has one bound.

    ``band_gap >= 3 eV``, ``heat_of_formation <= 0.21 eV``, ``1.4 <= band_gap <= 3.1 eV``.
    """
    name = criterion.property
    if criterion.min is not None and criterion.max is not None:
        text = f"{criterion.min:g} <= {name} <= {criterion.max:g}"
    elif criterion.min is not None:
        text = f"{name} >= {criterion.min:g}"
    else:
        text = f"{name} <= {criterion.max:g}"
    return f"{text} {criterion.unit}".rstrip()


def ranking_order(ranking: RankingSpec) -> dict[str, str]:
    """How a ranking method orders candidates, in words.

    Returns
    -------
    dict
        ``order``: the order of the ranking; ``closest``: which candidates come first
        when none is predicted to meet every criterion (the shortlist then holds them).
    """
    if ranking.method == "probability":
        return {
            "order": "by the probability of meeting every criterion, P(success), from the "
            "models' prediction intervals (highest first; equal probabilities by margin)",
            "closest": "the highest probability of meeting every criterion",
        }
    if ranking.method == "margin":
        return {
            "order": "by margin: the signed distance of the candidate's worst predicted "
            "property to its range, positive inside every range (largest first)",
            "closest": "the smallest shortfall (the margin closest to 0)",
        }
    if ranking.pareto_objective == "probability":
        return {
            "order": "by Pareto front of the per-property probabilities of meeting the "
            "criteria (front 1 first), then by P(success)",
            "closest": "the best trade-offs between the per-property probabilities "
            "(the first Pareto fronts), the highest P(success) first within a front",
        }
    return {
        "order": "by Pareto front of the per-property margins (front 1 first), then by margin",
        "closest": "the best trade-offs between the per-property margins (the first Pareto "
        "fronts), the smallest shortfall first within a front",
    }


def property_columns(
    criteria: list[CriterionSpec],
    units: dict[str, str],
    held_out: dict[str, PredictionRecord],
    shortlist: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The shortlist's columns per property the criteria name: unit, interval level, the
    allowed range (criteria on one property intersected; None for an open end) and
    whether the shortlisted candidates (or, without a shortlist, the held-out records)
    have reported values of it."""
    columns = []
    for prop, (low, high) in property_ranges(criteria).items():
        record = held_out.get(prop)
        if shortlist is not None:
            column = f"reported_{prop}"
            reported = column in shortlist.columns and bool(shortlist[column].notna().any())
        else:
            reported = record is not None and any(v is not None for v in record.y_true)
        level = record.level if record is not None else None
        if level is None and f"lower_{prop}" in getattr(shortlist, "columns", ()):
            level = next((r.level for r in held_out.values() if r.level is not None), None)
        columns.append(
            {
                "property": prop,
                "unit": units.get(prop, ""),
                "level": level,
                "reported": reported,
                "min": low if math.isfinite(low) else None,
                "max": high if math.isfinite(high) else None,
            }
        )
    return columns


def with_reported(frame: pd.DataFrame, held_out: dict[str, PredictionRecord]) -> pd.DataFrame:
    """A copy of ``frame`` with ``reported_<target>``: each candidate's reported (true)
    value, None where the source has none. Columns the frame already has are kept; the
    others come from the held-out records."""
    frame = frame.copy()
    for target, record in held_out.items():
        if f"reported_{target}" in frame.columns:
            continue
        reported = dict(zip(record.ids, record.y_true, strict=True))
        frame[f"reported_{target}"] = [reported.get(i) for i in frame["id"]]
    return frame


def model_settings(
    specs: list[ModelSpec], models: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """How each model was set up, from its spec and the run's model summaries
    (:func:`model_summary`, by target).

    The parameters are those of the final fit (the summary's ``params``; for a summary
    without them, the algorithm's defaults overridden by the spec's ``params`` and then
    by the search's best parameters, as training does); each one says where it came
    from: ``default``, ``spec`` or ``search``.
    """
    settings = []
    for model in specs:
        summary = models.get(model.target, {})
        search = summary.get("search") or {}
        best = search.get("best_params", {})
        final = summary.get("params") or {
            **DEFAULT_PARAMS.get(model.algorithm, {}),
            **model.params,
            **best,
        }
        parameters = []
        for name, value in final.items():
            origin = "default"
            if name in best:
                origin = "search"
            elif name in model.params:
                origin = "spec"
            parameters.append({"name": name, "value": value, "origin": origin})
        searched = (
            f"{search['method']} search over {search['candidates']} candidates"
            if search
            else "none"
        )
        notes = []
        if summary.get("reused_from"):
            shown = summary["reused_from"]
            shown = shown if len(shown) <= 16 else f"{shown[:12]}…"
            notes.append(f"stored model {shown} reused (same training set)")
        if model.kind == "two_stage_gap":
            cross_validation = summary.get("cross_validation") or {}
            decision = cross_validation.get("gap_decision", model.gap_decision)
            notes.append(f"metal when the label is <= {model.metal_threshold:g}")
            if decision is not None:
                notes.append(f"gap predicted when P(gap) >= {decision:.2f}")
        if model.select_features is not None:
            notes.append(f"the {model.select_features} features most correlated with the label")
        if model.positive_at_most is not None:
            notes.append(f"class 1 when the label is <= {model.positive_at_most:g}")
        if model.scale:
            notes.append("standardized features")
        if model.clip_min is not None:
            notes.append(f"predictions clipped at >= {model.clip_min:g}")
        settings.append(
            {
                "target": model.target,
                "algorithm": summary.get("algorithm", model.algorithm),
                "kind": summary.get("kind", model.kind),
                "n_features": summary.get("n_features"),
                "parameters": parameters,
                "cv_folds": model.cv_folds,
                "search": searched,
                "interval": (
                    "none"
                    if model.interval == "none"
                    else f"{model.interval} conformal, {model.interval_level:.0%}"
                ),
                "notes": notes,
            }
        )
    return settings


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Table rows as dicts, with None for missing values."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def funnel(ranking: pd.DataFrame, criteria: list[CriterionSpec]) -> list[tuple[str, int]]:
    """Candidates passing each criterion on its own, then all of them."""
    rows = [("candidates", len(ranking))]
    for criterion in criteria:
        values = ranking[prediction_column(criterion.property)].to_numpy(dtype=float)
        rows.append(
            (criterion_label(criterion), int((criterion_margin(values, criterion) >= 0).sum()))
        )
    rows.append(("every criterion", int(ranking["meets_criteria"].sum())))
    return rows


def expected_counts(ranking: pd.DataFrame, criteria: list[CriterionSpec]) -> dict[str, float]:
    """Expected candidates passing each row of :func:`funnel`, from the probabilities.

    Empty when the ranking has no probabilities (``margin`` ranking).
    """
    if SUCCESS_COLUMN not in ranking.columns:
        return {}
    expected = dict(expected_funnel(ranking, criteria))
    counts = {"candidates": float(len(ranking)), "every criterion": expected["every criterion"]}
    for criterion in criteria:
        counts[criterion_label(criterion)] = expected[criterion.property]
    return counts


def metrics_document(
    run_id: str,
    spec: CampaignSpec,
    metrics: dict[str, dict[str, Any]],
    units: dict[str, str],
    screening: dict[str, Any],
    counts: dict[str, int],
    step_seconds: dict[str, float],
    models: dict[str, dict[str, Any]] | None = None,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``metrics.json``: held-out metrics per target and the run's counts.

    ``models`` (see :func:`model_summary`) adds each target's baselines, cross-validated
    scores, hyperparameter search and feature importance; ``changes`` what changed since
    the campaign's previous run (see
    :func:`~matscreen.catalog.queries.changes_since_previous`), None for a first run.
    """
    return {
        "run_id": run_id,
        "campaign": spec.name,
        "spec_sha256": spec.fingerprint(),
        "split": spec.split.model_dump(),
        "targets": {t: {**m, "unit": units.get(t, "")} for t, m in metrics.items()},
        "models": models or {},
        "changes": changes,
        "screening": screening,
        "counts": counts,
        "step_seconds": {k: round(v, 3) for k, v in step_seconds.items()},
    }


#: Features listed per model in metrics.json and the report, most important first.
TOP_FEATURES = 10


def model_summary(fitted: FittedSurrogate, reused_from: str | None = None) -> dict[str, Any]:
    """What metrics.json keeps of a trained model besides its held-out metrics.

    ``reused_from`` is the catalog id of the stored model a run took instead of fitting
    again (its training set was unchanged); None when the run fitted the model.
    """
    model = fitted.model
    return {
        "reused_from": reused_from,
        "algorithm": model.algorithm,
        "params": model.params,
        "kind": model.kind,
        "n_features": len(model.feature_labels),
        "baselines": fitted.evaluation.baselines,
        "cross_validation": model.cv_metrics,
        "search": model.search,
        "importance": fitted.evaluation.importance[:TOP_FEATURES],
        "calibration": fitted.evaluation.calibration,
    }


def run_counts(
    ingests: list[IngestResult],
    table: FeatureTable,
    split: DataSplit,
    ranking: pd.DataFrame,
    pools: Pools,
    left_out: list[RecordFailure] = (),  # type: ignore[assignment]
    streamed: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """How many records each step took in and let through.

    ``train``/``test`` are the two parts of the training pool; ``candidates`` the screened
    pool (the held-out records for a retrospective screen), ``ranked`` those ranked;
    ``excluded`` the records left out with a reason (no label, already known, no hull
    reference). ``streamed`` holds the counts of the sources screened chunk by chunk
    (:class:`~matscreen.tasks.screen.ScreenedCandidates`), added to those read whole;
    ``predictions_reused`` counts the streamed candidates whose predictions by every model
    an earlier run recorded (a run resumed after it was killed), ``records_resumed`` the
    streamed records and failed rows of the chunks such a run had finished, taken whole.
    """
    featured = set(table.frame.index)
    more = Counter(streamed or {})
    return {
        "records": sum(len(i.records) for i in ingests) + more["records"],
        "duplicates": sum(r.duplicate_of is not None for i in ingests for r in i.records)
        + more["duplicates"],
        "ingest_failures": sum(len(i.failures) for i in ingests) + more["ingest_failures"],
        "featurized": len(table.frame) + more["featurized"],
        "feature_failures": len(table.failures) + more["feature_failures"],
        "training_pool": len(pools.training),
        "train": len(split.train_ids),
        "test": len(split.test_ids),
        "candidate_pool": len(pools.candidates) + more["candidate_pool"]
        if not pools.retrospective
        else len(ranking),
        "candidates_featurized": sum(c.id in featured for c in pools.candidates)
        + more["featurized"]
        if not pools.retrospective
        else len(ranking),
        "known_candidates": len(pools.known) + more["known_candidates"],
        "excluded": len(pools.excluded) + len(left_out) + more["excluded"],
        "candidates": len(ranking),
        "hits": int(ranking["meets_criteria"].sum()),
        "predictions_reused": more["predictions_reused"],
        "records_resumed": more["records_resumed"],
    }


def all_failures(
    ingests: list[IngestResult], records: list[StructureRecord], table: FeatureTable
) -> list[RecordFailure]:
    """Every record that failed, at ingest or at featurization."""
    return [f for i in ingests for f in i.failures] + feature_failures(records, table)


def campaign_report(
    spec: CampaignSpec,
    document: dict[str, Any],
    snapshots: list[SourceSnapshot],
    held_out: dict[str, PredictionRecord],
    ranking: pd.DataFrame,
    shortlist: pd.DataFrame,
    featurization: dict[str, Any],
    software: dict[str, str],
    changes: dict[str, Any] | None = None,
    suggestions: pd.DataFrame | None = None,
    failures: list[RecordFailure] = (),  # type: ignore[assignment]
    pictures: list[dict[str, Any]] = (),  # type: ignore[assignment]
    structure_files: dict[str, Any] | None = None,
) -> str:
    """Render ``report.html`` for a campaign run.

    Parameters
    ----------
    document
        The run's metrics document (:func:`metrics_document`).
    held_out
        For each target, the model's prediction record on the held-out set.
    ranking, shortlist
        The ranked candidates, and the shortlisted ones in shortlist order (with space
        groups, :func:`~matscreen.tasks.report.outputs.with_space_groups`).
    featurization
        Preset name, feature count, featurizer class names, configuration hash.
    changes
        What changed since the campaign's previous run (``diff`` of metrics.json), if any.
    suggestions
        The next experiments (:func:`~matscreen.tasks.rank.suggest.suggest`), if the
        campaign asks for them.
    snapshots
        The snapshot of every source read.
    failures
        Every record left out (failed to read or featurize, not in either pool, known,
        not placed on the hull), with its reason.
    pictures
        Unit-cell pictures of the top candidates: ``rank``, ``id``, ``formula``, ``png``.
    structure_files
        The DFT hand-off folder: ``folder``, ``jsonl`` and ``count`` of files.
    """
    units = spec.units()
    parity = {}
    for target, record in held_out.items():
        pairs = [(t, p) for t, p in zip(record.y_true, record.y_pred, strict=True) if t is not None]
        parity[target] = parity_plot_png(
            [t for t, _ in pairs], [p for _, p in pairs], target, units.get(target, "")
        )
    models = document.get("models", {})
    curves = {t: m["calibration"] for t, m in models.items() if m.get("calibration")}
    context = ReportContext(
        campaign=spec.name,
        description=spec.description,
        run_id=document["run_id"],
        spec_sha256=document["spec_sha256"],
        finished_at=utc_now(),
        sources=[asdict(snapshot) for snapshot in snapshots],
        counts=document["counts"],
        split={
            **spec.split.model_dump(),
            "n_train": document["counts"]["train"],
            "n_test": document["counts"]["test"],
        },
        featurization=featurization,
        metrics={
            t: {k: v for k, v in m.items() if k != "unit"} for t, m in document["targets"].items()
        },
        units=units,
        criteria=[c.model_dump() for c in spec.criteria],
        funnel=funnel(ranking, list(spec.criteria)),
        expected_funnel=expected_counts(ranking, list(spec.criteria)),
        shortlist=_rows(with_reported(shortlist, held_out)),
        pools={s.name: s.pool for s in spec.sources},
        retrospective=bool(document["screening"].get("retrospective", True)),
        pictures=list(pictures),
        structure_files=structure_files,
        ranking_method=spec.ranking.method,
        ranking_order=ranking_order(spec.ranking),
        properties=property_columns(list(spec.criteria), units, held_out, shortlist),
        model_settings=model_settings(list(spec.models), models),
        suggestions=_rows(suggestions) if suggestions is not None else None,
        suggest_settings=(
            spec.ranking.suggest.model_dump() if spec.ranking.suggest is not None else None
        ),
        validation=document["screening"].get("validation"),
        step_seconds=document["step_seconds"],
        software=software,
        parity_png=parity,
        models=models,
        calibration_png=calibration_plot_png(curves) if curves else None,
        changes=changes,
        failures=[
            {"id": f.id, "stage": f.stage, "message": f.message}
            for f in sorted(failures, key=lambda f: f.id)
        ],
    )
    return render_report(context)
