"""The ``matscreen`` command line: the user's entry to the flows and the catalog."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.errors import MatscreenError

DEFAULT_SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"


def _run_campaign(args: argparse.Namespace) -> int:
    from prefect.settings import PREFECT_API_URL
    from prefect_dask import DaskTaskRunner

    from matscreen.flows.campaign import screen_candidates
    from matscreen.flows.runtime import dask_scheduler, prefect_api
    from matscreen.tasks.spec import load_spec

    settings = Settings()
    spec = load_spec(Path(args.spec), settings.data_dir)  # fails here, before any work
    print(f"campaign {spec.name}: spec {args.spec}")
    print(f"catalog {settings.catalog_url_for_display}, data {settings.data_dir}")
    if settings.dask_address and not PREFECT_API_URL.value():
        raise MatscreenError(
            f"MATSCREEN_DASK_ADDRESS is set ({settings.dask_address}) but PREFECT_API_URL is "
            "not: workers of an existing Dask cluster cannot reach the Prefect API this "
            "command would serve on loopback; start a Prefect server and set PREFECT_API_URL"
        )
    started = time.perf_counter()
    with prefect_api() as api_url, dask_scheduler(settings) as address:
        startup = time.perf_counter() - started
        print(f"Prefect API {api_url}; Dask scheduler {address} ({startup:.1f} s to start)")
        runner = DaskTaskRunner(address=address)
        result = screen_candidates.with_options(task_runner=runner)(
            spec_path=str(Path(args.spec).resolve()),
            output_dir=str(args.output) if args.output else None,
        )
    total = time.perf_counter() - started
    _print_summary(result, startup, total)
    return 0


def _number(value: float | None, digits: int) -> str:
    """A metric for printing: None or NaN (no labels, constant labels) shows as n/a."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _print_summary(result: dict[str, Any], startup: float, total: float) -> None:
    document = result["metrics"]
    print(f"\nrun {result['run_id']}")
    print("step times (s):")
    print(f"  {'start Prefect + Dask':<22}{startup:8.1f}")
    for step, seconds in result["step_seconds"].items():
        print(f"  {step:<22}{seconds:8.1f}")
    print(f"  {'total':<22}{total:8.1f}")
    print("held-out metrics:")
    print(f"  {'target':<20}{'MAE':>9}{'RMSE':>9}{'R2':>8}{'dummy MAE':>11}{'train':>7}{'test':>6}")
    for target, m in document["targets"].items():
        mae, rmse, r2, dummy = (_number(m[k], 4) for k in ("mae", "rmse", "r2", "dummy_mae"))
        print(
            f"  {target:<20}{mae:>9}{rmse:>9}{r2:>8}{dummy:>11}"
            f"{m['n_train']:7d}{m['n_test']:6d}  ({m['unit']})"
        )
    s = document["screening"]
    print(
        f"screening: {s['n_predicted_hits']} of {s['n_candidates']} held-out candidates predicted "
        f"to meet every criterion; {s['n_true_hits']} truly do; "
        f"{s['true_hits_in_shortlist']} of them in the top {s['shortlist_size']}"
    )
    print("outputs:")
    for info in result["files"].values():
        print(f"  {info['path']}")


def _describe(entity: Any) -> str:
    a = entity.attributes
    match entity.kind:
        case "ranking":
            return f"{a['method']}; {a['n_candidates']} candidates, {a['n_meeting_criteria']} hits"
        case "prediction_set":
            return f"{a['target']}: {a['n_rows']} held-out predictions"
        case "model":
            m = a["metrics"]
            return (
                f"{a['target']} {a['algorithm']} ({a['n_features']} features): held-out "
                f"MAE {_number(m['mae'], 4)} vs dummy {_number(m['dummy_mae'], 4)}; artifact "
                f"{a['artifact_sha256'][:12]}"
            )
        case "training_set":
            return f"{a['target']}: {a['n_rows']} training rows"
        case "data_split":
            return (
                f"{a['method']} split, seed {a['seed']}: {len(a['train_ids'])} train / "
                f"{len(a['test_ids'])} held out"
            )
        case "feature_table":
            return (
                f"preset {a['preset']}: {len(a['labels'])} features x {a['n_rows']} rows, "
                f"config {a['config_sha256'][:12]}"
            )
        case "structure_record":
            props = ", ".join(
                f"{k} {v:g} {a['units'].get(k, '')}"
                for k, v in a["properties"].items()
                if v is not None
            )
            return f"{a['formula']}, row {a['row']} of source {a['source']}; reported {props}"
        case "source_snapshot":
            return (
                f"{a['location']} sha256 {a['sha256']}; licence {a['licence']}; "
                f"cite {'; '.join(a['citation'])}"
            )
        case "campaign_spec":
            return f"spec sha256 {a['sha256'][:12]}"
    return ""


def _lineage(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.catalog.lineage import lineage

    settings = Settings()
    with Catalog(settings.catalog_url) as catalog:
        found = lineage(catalog, ArtifactStore(settings.artifact_dir), args.candidate, args.run)
    if args.json:
        print(json.dumps(asdict(found), indent=2, default=str))
        return 0
    row = found.row
    print(f"candidate {found.candidate}: rank {row['rank']} ({row['formula']})")
    predictions = ", ".join(f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("pred_"))
    print(f"  predicted {predictions}; meets criteria: {'yes' if row['meets_criteria'] else 'no'}")
    for entity in found.entities:
        activity = found.generated_by.get(entity.id)
        made = (
            f"\n      generated by {activity.name} ({activity.kind} {activity.id}, "
            f"{activity.started_at})"
            if activity
            else ""
        )
        print(
            f"  {entity.kind:<17}{entity.id[:12]}  {entity.name}\n      {_describe(entity)}{made}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``matscreen`` command."""
    parser = argparse.ArgumentParser(
        prog="matscreen", description="High-throughput screening of crystal structures."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    campaign = commands.add_parser("campaign", help="run screening campaigns")
    actions = campaign.add_subparsers(dest="action", required=True)
    run = actions.add_parser("run", help="run a campaign spec end to end")
    run.add_argument(
        "spec",
        nargs="?",
        default=str(DEFAULT_SPEC),
        help=f"campaign spec (YAML); default {DEFAULT_SPEC.relative_to(REPOSITORY_ROOT)}",
    )
    run.add_argument(
        "--output", type=Path, default=None, help="output folder; default runs/<run id>"
    )
    run.set_defaults(handler=_run_campaign)

    trace = commands.add_parser("lineage", help="trace a ranked candidate back to its source")
    trace.add_argument("candidate", help="candidate id as in shortlist.csv (or the source's id)")
    trace.add_argument("--run", default=None, help="campaign run id (default: latest ranking)")
    trace.add_argument("--json", action="store_true", help="print the chain as JSON")
    trace.set_defaults(handler=_lineage)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``matscreen`` command; return its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except MatscreenError as exc:
        print(f"matscreen: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
