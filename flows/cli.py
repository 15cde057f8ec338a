"""The ``matscreen`` command line: the user's entry to the flows and the catalog."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.errors import MatscreenError, SpecError

DEFAULT_SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"


def _run_campaign(args: argparse.Namespace) -> int:
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
    from matscreen import execute_campaign

    print(f"catalog {settings.catalog_url_for_display}, data {settings.data_dir}")
    result = execute_campaign(settings, spec_path, output, suggest)
    print(
        f"Prefect API {result['prefect_api']}; Dask scheduler {result['dask_scheduler']} "
        f"({result['startup_seconds']:.1f} s to start)"
    )
    _print_summary(result, result["startup_seconds"], result["total_seconds"])
    return result


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


def _number(value: float | None, digits: int) -> str:
    """A metric for printing: None or NaN (no labels, constant labels) shows as n/a."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("matscreen")
    except PackageNotFoundError:
        return "unknown"


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
        mae, rmse, r2, dummy = (_number(m[k], 4) for k in ("mae", "rmse", "r2", "dummy_mae"))
        level = m.get("level")
        covered = f"{_number(m['coverage'], 3)}/{level:g}" if level is not None else "-"
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


def _describe(entity: Any) -> str:
    a = entity.attributes
    match entity.kind:
        case "ranking":
            return f"{a['method']}; {a['n_candidates']} candidates, {a['n_meeting_criteria']} hits"
        case "prediction_set":
            return f"{a['target']}: predictions for {a['n_rows']} records"
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
    with Catalog(settings.catalog_url, create=False) as catalog:
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
        if entity.id in found.damaged:
            print(f"      DAMAGED: {found.damaged[entity.id]}")
    listed = {entity.id for entity in found.entities}
    for entity_id, problem in found.damaged.items():
        if entity_id not in listed:
            print(f"  ranking          {entity_id[:12]}  DAMAGED: {problem}")
    if found.damaged:
        print(
            f"matscreen: warning: {len(found.damaged)} artifact(s) of this chain do not match "
            "their recorded sha256; `matscreen verify --repair` quarantines them",
            file=sys.stderr,
        )
        return 1
    return 0


# -- ingest ---------------------------------------------------------------------------------


def _split(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _ranges(values: list[str] | None) -> dict[str, dict[str, float]]:
    """``--range band_gap=0.5:3`` (either end may be empty) → ``{band_gap: {min, max}}``."""
    ranges: dict[str, dict[str, float]] = {}
    for value in values or []:
        field, sep, bounds = value.partition("=")
        low, colon, high = bounds.partition(":")
        if not sep or not colon:
            raise MatscreenError(f"--range {value!r}: expected FIELD=MIN:MAX (an end may be empty)")
        try:
            ranges[field.strip()] = {
                k: float(v) for k, v in (("min", low), ("max", high)) if v.strip()
            }
        except ValueError as exc:
            raise MatscreenError(f"--range {value!r}: bounds must be numbers") from exc
    return ranges


def _properties(values: list[str] | None, key: str) -> dict[str, dict[str, str]]:
    """``--property band_gap=egap[:eV]`` → ``{band_gap: {key: egap, unit: eV}}``.

    The unit may be left out for matscreen's normalized names (band_gap, …).
    """
    from matscreen.tasks.sources.properties import PROPERTY_UNITS

    mapped: dict[str, dict[str, str]] = {}
    for value in values or []:
        name, sep, rest = value.partition("=")
        column, _, unit = rest.partition(":")
        unit = unit or PROPERTY_UNITS.get(name, "")
        if not sep or not column or not unit:
            raise MatscreenError(
                f"--property {value!r}: expected NAME=FIELD:UNIT (UNIT may be left out for "
                f"{', '.join(sorted(PROPERTY_UNITS))})"
            )
        mapped[name] = {key: column, "unit": unit}
    return mapped


def _sites(values: list[str] | None) -> dict[str, list[str]]:
    """``--site A=Ca,Sr,Ba`` → ``{A: [Ca, Sr, Ba]}``."""
    sites: dict[str, list[str]] = {}
    for value in values or []:
        label, sep, elements = value.partition("=")
        if not sep or not _split(elements):
            raise MatscreenError(f"--site {value!r}: expected LABEL=El1,El2,...")
        sites[label.strip()] = _split(elements) or []
    return sites


def source_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The source spec (as a campaign spec would hold it) that ``matscreen ingest`` names."""
    kind = args.kind
    source: dict[str, Any] = {"kind": kind, "name": args.name or kind}
    for key in ("limit", "licence"):
        if getattr(args, key, None) is not None:
            source[key] = getattr(args, key)
    if args.citation:
        source["citation"] = args.citation
    match kind:
        case "mp":
            for key in ("elements", "exclude_elements", "chemsys", "formula", "material_ids"):
                if getattr(args, key):
                    source[key] = _split(getattr(args, key))
            if args.properties:
                source["properties"] = _split(args.properties)
            source.update(ranges=_ranges(args.range), chunk_size=args.chunk_size)
            if args.endpoint:
                source["endpoint"] = args.endpoint
        case "aflow":
            if args.species:
                source["species"] = _split(args.species)
            for key in ("nspecies", "catalog", "endpoint"):
                if getattr(args, key) is not None:
                    source[key] = getattr(args, key)
            source.update(ranges=_ranges(args.range), page_size=args.page_size)
        case "optimade":
            source.update(
                base_url=args.base_url,
                filter=args.filter,
                page_limit=args.page_limit,
                properties=_properties(args.property, "field"),
            )
        case "files":
            source.update(path=args.path, pattern=args.pattern, format=args.format)
            source["properties"] = _properties(args.property, "column")
            for key in ("id_key", "structure_key"):
                if getattr(args, key):
                    source[key] = getattr(args, key)
        case "prototypes":
            source.update(
                prototype=args.prototype,
                sites=_sites(args.site),
                charge_neutral=not args.any_charge,
                distinct_elements=not args.allow_repeats,
            )
    return source


def _ingest(args: argparse.Namespace) -> int:
    from matscreen.flows.ingest import ingest_structures, parse_sources
    from matscreen.flows.runtime import prefect_api
    from matscreen.tasks.sources.records import RefreshCounts
    from matscreen.tasks.spec import load_spec

    settings = Settings()
    if args.kind == "spec":
        spec = load_spec(Path(args.spec), settings.data_dir)
        sources = [source.model_dump(mode="json") for source in spec.sources]
    else:
        sources = [source_from_args(args)]
    parse_sources(sources)  # a bad argument fails here, before anything starts
    print(f"catalog {settings.catalog_url_for_display}")
    with prefect_api():
        result = ingest_structures(
            sources=sources,
            output=str(args.output) if args.output else None,
            show_progress=sys.stderr.isatty() and not args.quiet,
        )
    print(f"\nrun {result['run_id']}")
    print(
        f"  {'source':<16}{'kind':<11}{'read':>7}{'records':>9}{'new':>7}"
        f"{'duplicates':>12}{'errors':>8}  database version"
    )
    for s in result["sources"]:
        print(
            f"  {s['source']:<16}{s['kind']:<11}{s['read']:>7}{s['records']:>9}{s['new']:>7}"
            f"{s['duplicates']:>12}{s['errors']:>8}  {s['database_version'] or '-'}"
        )
    for s in result["sources"]:
        if s.get("changes"):
            print(f"  {s['source']}: incremental read, {RefreshCounts(**s['changes']).describe()}")
    if result["output"]:
        print(f"{result['records_written']} records written to {result['output']}")
    return 0


def _add_ingest_parser(commands: Any) -> None:
    ingest = commands.add_parser(
        "ingest",
        help="read structures from a source into the catalog",
        description="Read structures into the catalog: records in, new, duplicates, errors.",
    )
    kinds = ingest.add_subparsers(dest="kind", required=True)

    def kind(
        name: str, help_text: str, licence_default: str | None, cited: bool = True
    ) -> argparse.ArgumentParser:
        # ``cited``: the kind has a default citation (the database's reference paper).
        sub = kinds.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--name", help=f"source name in record ids (default {name})")
        sub.add_argument("--limit", type=int, help="read at most this many records")
        sub.add_argument(
            "--licence",
            required=licence_default is None,
            help="licence of the data"
            + (f" (default {licence_default})" if licence_default else ""),
        )
        sub.add_argument(
            "--citation",
            action="append",
            required=not cited,
            help="reference to cite (repeat for several)",
        )
        sub.add_argument("--output", type=Path, help="also write the records as JSON lines")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.set_defaults(handler=_ingest)
        return sub

    mp = kind("mp", "the Materials Project summary endpoint (key from MP_API_KEY)", "CC-BY-4.0")
    mp.add_argument("--elements", help="comma-separated elements that must all be present")
    mp.add_argument("--exclude-elements", dest="exclude_elements", help="elements to exclude")
    mp.add_argument("--chemsys", help="chemical systems, e.g. Li-Fe-O,Na-Fe-O")
    mp.add_argument("--formula", help="formulas, e.g. SrTiO3,BaTiO3")
    mp.add_argument("--ids", dest="material_ids", help="material ids, e.g. mp-149,mp-2534")
    mp.add_argument("--range", action="append", help="FIELD=MIN:MAX, e.g. band_gap=1:3")
    mp.add_argument("--properties", help="normalized properties to fetch (comma-separated)")
    mp.add_argument("--chunk-size", dest="chunk_size", type=int, default=1000)
    mp.add_argument("--endpoint", help="API endpoint (default: mp-api's)")

    aflow = kind("aflow", "AFLOW through its AFLUX search API", None)
    aflow.add_argument("--species", help="comma-separated species that must all be present")
    aflow.add_argument("--nspecies", type=int, help="number of species")
    aflow.add_argument("--catalog", help="AFLOW catalogue: ICSD, LIB1 ... LIB7")
    aflow.add_argument("--range", action="append", help="KEYWORD=MIN:MAX, e.g. Egap=1:3")
    aflow.add_argument("--page-size", dest="page_size", type=int, default=100)
    aflow.add_argument("--endpoint", help="AFLUX endpoint (default aflow.org)")

    optimade = kind("optimade", "any OPTIMADE provider's structures endpoint", None, False)
    optimade.add_argument("base_url", help="provider base URL, e.g. https://oqmd.org/optimade")
    optimade.add_argument("--filter", default="", help='OPTIMADE filter, e.g. elements HAS "O"')
    optimade.add_argument("--page-limit", dest="page_limit", type=int, default=100)
    optimade.add_argument(
        "--property", action="append", help="NAME=FIELD[:UNIT], e.g. band_gap=_oqmd_band_gap"
    )

    files = kind("files", "local structure files: CIF, POSCAR, JSON, extxyz, CSV", None, False)
    files.add_argument("path", help="a file or a folder")
    files.add_argument("--pattern", default="*", help="glob inside a folder, e.g. '**/*.cif'")
    files.add_argument("--format", default="auto", help="format of every file (default: by name)")
    files.add_argument("--id-key", dest="id_key", help="column or key holding each record's id")
    files.add_argument("--structure-key", dest="structure_key", help="column or key of structures")
    files.add_argument(
        "--property", action="append", help="NAME=COLUMN[:UNIT], e.g. band_gap=egap:eV"
    )

    prototypes = kind("prototypes", "candidates made by decorating a prototype", "CC0-1.0")
    prototypes.add_argument("prototype", help="built-in prototype (perovskite_ABX3 ...) or a file")
    prototypes.add_argument(
        "--site", action="append", required=True, help="LABEL=El1,El2,..., e.g. A=Ca,Sr,Ba"
    )
    prototypes.add_argument(
        "--any-charge", action="store_true", help="keep combinations that are not charge-neutral"
    )
    prototypes.add_argument(
        "--allow-repeats", action="store_true", help="let one element sit on two site labels"
    )

    spec = kinds.add_parser("spec", help="every source of a campaign spec")
    spec.add_argument("spec", help="campaign spec (YAML)")
    spec.add_argument("--output", type=Path, help="also write the records as JSON lines")
    spec.add_argument("--quiet", action="store_true", help="no progress bar")
    spec.set_defaults(handler=_ingest)


# -- provenance questions ---------------------------------------------------------------------


def _ref(node: Any) -> str:
    return f"{node.kind:<17}{node.id[:12]}  {node.name}"


def _run_line(run: Any) -> str:
    spec = f" spec {run.spec}" if run.spec else ""
    return f"{run.id}  {run.name:<18} {run.status:<9} {run.started_at}{spec}"


def _as_json(value: Any) -> None:
    print(
        json.dumps(
            asdict(value) if not isinstance(value, list) else [asdict(v) for v in value],
            indent=2,
            default=str,
        )
    )


def _impact(args: argparse.Namespace) -> int:
    from matscreen.catalog import Catalog
    from matscreen.catalog.queries import impact

    with Catalog(Settings().catalog_url, create=False) as catalog:
        found = impact(catalog, args.entity)
    if args.json:
        _as_json(found)
        return 0
    print(f"downstream of {_ref(found.start)}")
    for entity in found.entities:
        print(f"  {_ref(entity)}")
    for kind, count in found.per_record.items():
        print(f"  ({count} {kind} entities)")
    print(f"in {len(found.runs)} run(s):")
    for run in found.runs:
        print(f"  {_run_line(run)}")
    return 0


def _find(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.catalog.queries import find_candidates, find_models, find_runs

    settings = Settings()
    with Catalog(settings.catalog_url, create=False) as catalog:
        if args.what == "runs":
            runs = find_runs(
                catalog,
                database_version=args.database_version,
                source=args.source,
                snapshot_sha256=args.snapshot_sha256,
                model_sha256=args.model_sha256,
            )
            if args.json:
                _as_json(runs)
            for run in [] if args.json else runs:
                print(_run_line(run))
        elif args.what == "models":
            models = find_models(catalog, source=args.source, target=args.target)
            if args.json:
                _as_json(models)
            for m in [] if args.json else models:
                mae = _number(m.metrics.get("mae"), 4)
                print(f"{m.id[:12]}  {m.name}  MAE {mae}  sources {', '.join(m.sources)}")
        elif args.what == "errors":
            if not args.run:
                raise SpecError("find errors: give the run (--run RUN_ID)")
            errors = [e.attributes for e in catalog.run_entities(args.run, kinds=["record_error"])]
            if args.json:
                _as_json(errors)
            for e in [] if args.json else errors:
                print(f"{e['stage']:<10} {e['source']}:{e['source_id']}  {e['message']}")
        else:
            criteria = [_criterion(text) for text in args.criterion or []]
            found = find_candidates(
                catalog, ArtifactStore(settings.artifact_dir), args.run, criteria or None
            )
            if args.json:
                _as_json(found)
            for c in [] if args.json else found:
                print(f"{c.rank:5d}  {c.id:<28} {c.formula:<12} margin {c.margin:.3f}")
    return 0


def _criterion(text: str) -> dict[str, Any]:
    """``band_gap=1.4:3.1:eV`` (either bound may be empty) → a criterion."""
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or len(parts) != 3:
        raise MatscreenError(f"--criterion {text!r}: expected PROPERTY=MIN:MAX:UNIT")
    low, high, unit = parts
    try:
        bounds = {k: float(v) for k, v in (("min", low), ("max", high)) if v.strip()}
    except ValueError as exc:
        raise MatscreenError(f"--criterion {text!r}: bounds must be numbers") from exc
    return {"property": name, "unit": unit, **bounds}


def _diff(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.catalog.queries import diff_runs

    settings = Settings()
    with Catalog(settings.catalog_url, create=False) as catalog:
        d = diff_runs(catalog, ArtifactStore(settings.artifact_dir), args.run_a, args.run_b)
    if args.json:
        _as_json(d)
        return 0
    print(f"{d.run_a} -> {d.run_b}")
    print(f"  new candidates {len(d.new)}, dropped {len(d.dropped)}, unchanged {d.unchanged}")
    print(f"  new hits {len(d.new_hits)}: {', '.join(d.new_hits[:10])}")
    print(f"  dropped hits {len(d.dropped_hits)}: {', '.join(d.dropped_hits[:10])}")
    print(f"  largest rank moves ({len(d.moves)} moved):")
    for move in d.moves[: args.top]:
        print(f"    {move.id:<28} {move.rank_a:5d} -> {move.rank_b:5d} ({move.delta:+d})")
    for change in d.inputs:
        print(f"  {change.kind}: only in a {len(change.only_a)}, only in b {len(change.only_b)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from matscreen.catalog import Catalog
    from matscreen.catalog.queries import show

    with Catalog(Settings().catalog_url, create=False) as catalog:
        shown = show(catalog, args.node)
    if args.json:
        _as_json(shown)
        return 0
    print(_ref(shown.node))
    for key, value in shown.attributes.items():
        print(f"  {key}: {value}")
    for relation, related in shown.relations.items():
        if not related.nodes:
            continue
        print(f"  {relation}:")
        for node in related.nodes:
            print(f"    {_ref(node)}")
        for kind, count in related.omitted.items():
            print(f"    ... and {count} more {kind}")
    for run in shown.runs:
        print(f"  in run {_run_line(run)}")
    return 0


def _add_query_parsers(commands: Any) -> None:
    impact = commands.add_parser("impact", help="everything downstream of an entity")
    impact.add_argument("entity", help="entity id, unique id prefix or name")
    impact.add_argument("--json", action="store_true")
    impact.set_defaults(handler=_impact)

    find = commands.add_parser(
        "find", help="find runs, models, candidates or a run's records left out (errors)"
    )
    find.add_argument("what", choices=["runs", "models", "candidates", "errors"])
    find.add_argument("--database-version", dest="database_version", help="runs: source release")
    find.add_argument("--source", help="runs/models: a source name or kind")
    find.add_argument("--snapshot-sha256", dest="snapshot_sha256", help="runs: a snapshot")
    find.add_argument("--model-sha256", dest="model_sha256", help="runs: a model artifact")
    find.add_argument("--target", help="models: the predicted property")
    find.add_argument(
        "--run", help="candidates: the run (default: latest ranking); errors: the run"
    )
    find.add_argument(
        "--criterion", action="append", help="candidates: PROPERTY=MIN:MAX:UNIT (repeatable)"
    )
    find.add_argument("--json", action="store_true")
    find.set_defaults(handler=_find)

    diff = commands.add_parser("diff", help="how run B's ranking differs from run A's")
    diff.add_argument("run_a")
    diff.add_argument("run_b")
    diff.add_argument("--top", type=int, default=10, help="rank moves to list")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=_diff)

    show = commands.add_parser("show", help="any entity or activity, with its neighbours")
    show.add_argument("node", help="id, unique id prefix (8+ characters) or entity name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)


def _path(text: str) -> Path:
    """A path argument; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder")
    return Path(text)


def _at_least_one(text: str) -> int:
    """A count given on the command line: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``matscreen`` command."""
    parser = argparse.ArgumentParser(
        prog="matscreen", description="High-throughput screening of crystal structures."
    )
    parser.add_argument("--version", action="version", version=f"matscreen {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show an error's traceback instead of one line"
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
        "--output", type=_path, default=None, help="output folder; default runs/<run id>"
    )
    run.add_argument(
        "--suggest",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="also suggest N next experiments (suggestions.csv): sets ranking.suggest.n, "
        "keeping the spec's kappa and exclude_shortlist",
    )
    run.set_defaults(handler=_run_campaign)

    _add_ingest_parser(commands)
    _add_query_parsers(commands)
    from matscreen.flows.train import add_train_parsers

    add_train_parsers(commands)
    from matscreen.flows.verify import add_verify_parser

    add_verify_parser(commands)

    export = commands.add_parser("export", help="export a run's provenance as FAIR records")
    export.add_argument("format", choices=["prov", "rocrate"], help="PROV-JSON/-O or RO-Crate")
    export.add_argument("run", help="campaign run id")
    export.add_argument("--output", required=True, type=_path, help="folder to write into")
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
        "--output", type=_path, default=None, help="output folder; default runs/reproduce-<run>"
    )
    again.set_defaults(handler=_reproduce)

    trace = commands.add_parser("lineage", help="trace a ranked candidate back to its source")
    trace.add_argument("candidate", help="candidate id as in shortlist.csv (or the source's id)")
    trace.add_argument("--run", default=None, help="campaign run id (default: latest ranking)")
    trace.add_argument("--json", action="store_true", help="print the chain as JSON")
    trace.set_defaults(handler=_lineage)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``matscreen`` command; return its exit status.

    An error matscreen raises on purpose (bad input, a setting, an output folder) is one
    line on stderr and exit status 2; with ``--debug`` it is raised, with its traceback.
    Ctrl-C ends with one line and exit status 130, SIGTERM with one line and 143 (a
    campaign run is recorded as ``interrupted`` either way).
    """
    args = build_parser().parse_args(argv)
    from matscreen.flows.runtime import quiet_own_errors, termination_signal

    if not args.debug:
        quiet_own_errors()
    try:
        return int(args.handler(args))
    except MatscreenError as exc:
        if args.debug:
            raise
        print(f"matscreen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("matscreen: interrupted", file=sys.stderr)
        return 130
    except termination_signal():  # SIGTERM, as Prefect raises it in a flow
        if args.debug:
            raise
        print("matscreen: terminated", file=sys.stderr)
        return 143
    except OSError as exc:  # the machine's: a full disk, a file-size limit, a lost mount
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"matscreen: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Ctrl-C reaches the Prefect server and the Dask workers too (one process group):
        # Prefect, recording the interrupted flow on a server that has just stopped,
        # raises a connection error in place of the KeyboardInterrupt.
        if args.debug or not _caused_by_interrupt(exc):
            raise
        print("matscreen: interrupted", file=sys.stderr)
        return 130


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
