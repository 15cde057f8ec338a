"""Commands that run campaigns: ``campaign run``, ``reproduce``, ``export`` and ``deploy``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matscreen.flows.cli.common import DEFAULT_SPEC, at_least_one, number, path_argument
from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.errors import MatscreenError


def add_campaign_parsers(commands: Any) -> None:
    """The ``campaign run``, ``export``, ``deploy`` and ``reproduce`` commands."""
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
        "--output", type=path_argument, default=None, help="output folder; default runs/<run id>"
    )
    run.add_argument(
        "--suggest",
        type=at_least_one,
        default=None,
        metavar="N",
        help="also suggest N next experiments (suggestions.csv): sets ranking.suggest.n, "
        "keeping the spec's kappa and exclude_shortlist",
    )
    run.set_defaults(handler=_campaign_run)

    export = commands.add_parser("export", help="export a run's provenance as FAIR records")
    export.add_argument("format", choices=["prov", "rocrate"], help="PROV-JSON/-O or RO-Crate")
    export.add_argument("run", help="campaign run id")
    export.add_argument("--output", required=True, type=path_argument, help="folder to write into")
    export.add_argument(
        "--outputs", help="the run's output folder (rocrate; default: where the run wrote)"
    )
    export.set_defaults(handler=_export)

    deploy = commands.add_parser(
        "deploy", help="register the deployments of deploy/prefect.yaml on the Prefect server"
    )
    deploy.add_argument(
        "--prefect-file",
        default=str(REPOSITORY_ROOT / "deploy" / "prefect.yaml"),
        help="deployments file (default deploy/prefect.yaml)",
    )
    deploy.add_argument("--name", action="append", help="only this deployment (repeatable)")
    deploy.set_defaults(handler=_deploy)

    again = commands.add_parser(
        "reproduce", help="re-run a recorded campaign run and compare its ranking"
    )
    again.add_argument("run", help="campaign run id")
    again.add_argument(
        "--output",
        type=path_argument,
        default=None,
        help="output folder; default runs/reproduce-<run>",
    )
    again.set_defaults(handler=_reproduce)


def _campaign_run(args: argparse.Namespace) -> int:
    from matscreen.tasks.files import apart_from, writable_folder
    from matscreen.tasks.spec import load_spec, spec_inputs, with_suggestions

    settings = Settings()
    spec = load_spec(Path(args.spec), settings.data_dir)  # fails here, before any work
    with_suggestions(spec, args.suggest)  # and so does a --suggest the spec cannot serve
    if args.output is not None:
        # and an output folder that cannot take the results or holds the sources
        apart_from(args.output, spec_inputs(spec), settings.home)
        writable_folder(args.output)
    print(f"campaign {spec.name}: spec {args.spec}")
    _execute_campaign(settings, Path(args.spec), args.output, args.suggest)
    return 0


def _execute_campaign(
    settings: Settings, spec_path: Path, output: Path | None, suggest: int | None = None
) -> dict[str, Any]:
    """Run the campaign flow through the Python API and print its summary."""
    from prefect.settings import PREFECT_API_URL

    from matscreen import execute_campaign

    print(f"catalog {settings.catalog_url_for_display}, data {settings.data_dir}")
    temporary = not PREFECT_API_URL.value()
    result = execute_campaign(settings, spec_path, output, suggest)
    print(
        f"Prefect API {result['prefect_api']}; Dask scheduler {result['dask_scheduler']} "
        f"({result['startup_seconds']:.1f} s to start)"
    )
    if temporary:
        print(
            "  (a temporary Prefect server, stopped with this command: its UI is gone; to "
            "keep runs and UI, run `prefect server start` and set "
            "PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    _print_summary(result, result["startup_seconds"], result["total_seconds"])
    return result


def _print_summary(result: dict[str, Any], startup: float, total: float) -> None:
    document = result["metrics"]
    print(f"\nrun {result['run_id']}")
    print("step times (s):")
    print(f"  {'start Prefect + Dask':<22}{startup:8.1f}")
    for step, seconds in result["step_seconds"].items():
        print(f"  {step:<22}{seconds:8.1f}")
    print(f"  {'total':<22}{total:8.1f}")
    print("held-out metrics:")
    print(
        f"  {'target':<20}{'MAE':>9}{'RMSE':>9}{'R2':>8}{'dummy MAE':>11}{'coverage':>10}"
        f"{'train':>7}{'test':>6}"
    )
    for target, m in document["targets"].items():
        mae, rmse, r2, dummy = (number(m[k], 4) for k in ("mae", "rmse", "r2", "dummy_mae"))
        level = m.get("level")
        covered = f"{number(m['coverage'], 3)}/{level:g}" if level is not None else "-"
        print(
            f"  {target:<20}{mae:>9}{rmse:>9}{r2:>8}{dummy:>11}{covered:>10}"
            f"{m['n_train']:7d}{m['n_test']:6d}  ({m['unit']})"
        )
    for target, model in document.get("models", {}).items():
        if model.get("reused_from"):
            print(f"  {target}: stored model reused (training set unchanged)")
    s = document["screening"]
    held = s.get("held_out", s)
    print(
        f"validation: {held['n_predicted_hits']} of {held['n_candidates']} held-out records "
        f"predicted to meet every criterion; {held['n_true_hits']} truly do"
    )
    counts = document["counts"]
    if s.get("retrospective", True):
        print("screen: no candidate source; the held-out records were screened")
    else:
        print(
            f"screen: {counts['candidate_pool']} candidates, {counts['known_candidates']} "
            f"already known, {counts['candidates']} ranked, {s['n_predicted_hits']} "
            "predicted to meet every criterion"
            + (
                f" ({s['expected_hits']:.1f} expected by P(success))"
                if s.get("expected_hits") is not None
                else ""
            )
        )
    if counts.get("excluded"):
        print(f"left out with a reason (see the report): {counts['excluded']} records")
    print("outputs:")
    for info in result["files"].values():
        print(f"  {info['path']}")


def _export(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.catalog.export import export_prov, export_rocrate
    from matscreen.tasks.files import writable_folder

    settings = Settings()
    out = writable_folder(Path(args.output))  # before the catalog is opened
    with Catalog(settings.catalog_url, create=False) as catalog:
        if args.format == "prov":
            written = export_prov(catalog, args.run, out)
            print(f"PROV-JSON {written.json}\nPROV-O (Turtle) {written.turtle}")
            return 0
        outputs = Path(args.outputs) if args.outputs else None
        artifacts = ArtifactStore(settings.artifact_dir)
        crate = export_rocrate(catalog, artifacts, args.run, out, outputs)
    print(f"RO-Crate {crate.metadata} ({len(crate.files)} files)\ndataset {crate.dataset}")
    for name in crate.omitted:
        print(f"  not in the crate: {name} (not found unchanged where the run wrote it)")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from prefect.settings import PREFECT_API_URL

    from matscreen.flows.deployments import register_deployments

    if not PREFECT_API_URL.value():
        raise MatscreenError(
            "PREFECT_API_URL is not set: deployments go to a Prefect server that workers "
            "poll (e.g. `prefect server start`, then PREFECT_API_URL=http://host:4200/api)"
        )
    registered = register_deployments(Path(args.prefect_file), args.name or None)
    for name, deployment_id in registered.items():
        print(f"deployed {name} ({deployment_id})")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.flows.reproduce import (
        check_inputs,
        compare,
        recorded_run,
        software_differences,
        write_spec,
    )
    from matscreen.tasks.files import writable_folder

    settings = Settings()
    if args.output is not None:
        writable_folder(args.output)  # before the catalog is opened
    artifacts = ArtifactStore(settings.artifact_dir)
    with Catalog(settings.catalog_url, create=False) as catalog:
        recorded = recorded_run(catalog, args.run)
        produced = catalog.run_entities(args.run, ["model", "prediction_set", "ranking"])
    check_inputs(recorded)  # refuses changed input files before any work
    damaged = artifacts.problems_of(produced)
    for problem in damaged.values():
        print(f"note: run {args.run}'s {problem}; the reproduction computes it again")
    out = writable_folder(args.output or Path("runs") / f"reproduce-{args.run}")
    for name, (then, now) in software_differences(recorded.software).items():
        print(f"note: {name} was {then} in run {args.run}, is {now} now")
    spec_path = write_spec(recorded, out)
    print(f"reproducing run {args.run} ({recorded.spec['name']}) from {spec_path}")
    result = _execute_campaign(settings, spec_path, out)
    with Catalog(settings.catalog_url, create=False) as catalog:
        outcome = compare(catalog, recorded, result["run_id"])
    still = artifacts.problems_of(e for e in produced if e.id in damaged)
    for entity in produced:
        if entity.id in damaged:
            state = still.get(entity.id, "stored again, intact")
            print(f"  {entity.kind} {entity.id[:12]} of run {args.run}: {state}")
    if outcome.identical:
        print(f"ranking identical to run {args.run}: {outcome.reproduced[:12]}")
        return 0
    print(
        f"ranking differs from run {args.run}: {outcome.original[:12]} then, "
        f"{outcome.reproduced[:12]} now"
    )
    if outcome.changed_snapshots:
        print(f"  sources that read different data: {', '.join(outcome.changed_snapshots)}")
    return 1
