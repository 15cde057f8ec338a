"""Assemble the campaign report and metrics document from a run's plain results."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from matscreen.tasks.dataset import feature_failures
from matscreen.tasks.featurize.batch import FeatureTable
from matscreen.tasks.models.xgb import PredictionRecord
from matscreen.tasks.rank.criteria import criterion_margin, prediction_column
from matscreen.tasks.report.html import ReportContext, parity_plot_png, render_report
from matscreen.tasks.report.outputs import shortlist_frame
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.sources.records import IngestResult, RecordFailure, StructureRecord
from matscreen.tasks.spec import CampaignSpec, CriterionSpec
from matscreen.tasks.split import DataSplit


def criterion_label(criterion: CriterionSpec) -> str:
    """Human form of a criterion, e.g. ``1.4 <= band_gap <= 3.1 eV``."""
    low = f"{criterion.min:g} <= " if criterion.min is not None else ""
    high = f" <= {criterion.max:g}" if criterion.max is not None else ""
    return f"{low}{criterion.property}{high} {criterion.unit}"


def _shortlist_rows(ranking: pd.DataFrame, size: int) -> list[dict[str, Any]]:
    """The shortlist in its order: the marked rows of the ranking, else its top ``size``."""
    if "shortlist_position" in ranking.columns:
        picked = ranking[ranking["shortlist_position"].notna()].sort_values("shortlist_position")
    else:
        picked = shortlist_frame(ranking, size)
    rows = picked.astype(object).where(picked.notna(), None)
    return rows.to_dict(orient="records")


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


def metrics_document(
    run_id: str,
    spec: CampaignSpec,
    metrics: dict[str, dict[str, Any]],
    units: dict[str, str],
    screening: dict[str, Any],
    counts: dict[str, int],
    step_seconds: dict[str, float],
) -> dict[str, Any]:
    """The content of ``metrics.json``: held-out metrics per target and the run's counts."""
    return {
        "run_id": run_id,
        "campaign": spec.name,
        "spec_sha256": spec.fingerprint(),
        "split": spec.split.model_dump(),
        "targets": {t: {**m, "unit": units.get(t, "")} for t, m in metrics.items()},
        "screening": screening,
        "counts": counts,
        "step_seconds": {k: round(v, 3) for k, v in step_seconds.items()},
    }


def run_counts(
    ingests: list[IngestResult], table: FeatureTable, split: DataSplit, ranking: pd.DataFrame
) -> dict[str, int]:
    """How many records each step took in and let through."""
    return {
        "records": sum(len(i.records) for i in ingests),
        "duplicates": sum(r.duplicate_of is not None for i in ingests for r in i.records),
        "ingest_failures": sum(len(i.failures) for i in ingests),
        "featurized": len(table.frame),
        "feature_failures": len(table.failures),
        "train": len(split.train_ids),
        "test": len(split.test_ids),
        "candidates": len(ranking),
        "hits": int(ranking["meets_criteria"].sum()),
    }


def all_failures(
    ingests: list[IngestResult], records: list[StructureRecord], table: FeatureTable
) -> list[RecordFailure]:
    """Every record that failed, at ingest or at featurization."""
    return [f for i in ingests for f in i.failures] + feature_failures(records, table)


def campaign_report(
    spec: CampaignSpec,
    document: dict[str, Any],
    ingests: list[IngestResult],
    records: list[StructureRecord],
    table: FeatureTable,
    held_out: dict[str, PredictionRecord],
    ranking: pd.DataFrame,
    featurization: dict[str, Any],
    software: dict[str, str],
) -> str:
    """Render ``report.html`` for a campaign run.

    Parameters
    ----------
    document
        The run's metrics document (:func:`metrics_document`).
    held_out
        For each target, the model's prediction record on the held-out set.
    featurization
        Preset name, feature count, featurizer class names, configuration hash.
    """
    units = spec.units()
    parity = {}
    for target, record in held_out.items():
        pairs = [(t, p) for t, p in zip(record.y_true, record.y_pred, strict=True) if t is not None]
        parity[target] = parity_plot_png(
            [t for t, _ in pairs], [p for _, p in pairs], target, units.get(target, "")
        )
    context = ReportContext(
        campaign=spec.name,
        description=spec.description,
        run_id=document["run_id"],
        spec_sha256=document["spec_sha256"],
        finished_at=utc_now(),
        sources=[asdict(i.snapshot) for i in ingests],
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
        shortlist=_shortlist_rows(ranking, spec.shortlist_size),
        ranking_method=spec.ranking.method,
        validation=document["screening"].get("validation"),
        step_seconds=document["step_seconds"],
        software=software,
        parity_png=parity,
        failures=[
            {"id": f.id, "stage": f.stage, "message": f.message}
            for f in all_failures(ingests, records, table)
        ],
    )
    return render_report(context)
