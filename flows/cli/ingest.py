"""``matscreen ingest``: read structures from a source into the catalog."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from matscreen.flows.settings import Settings
from matscreen.tasks.errors import MatscreenError


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


def add_ingest_parser(commands: Any) -> None:
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
