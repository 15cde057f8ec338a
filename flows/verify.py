"""``matscreen verify [--repair]``: check the whole home and say what was found and done."""

from __future__ import annotations

import argparse
from typing import Any

from matscreen.flows.settings import Settings


def _verify(args: argparse.Namespace) -> int:
    from matscreen.catalog import ArtifactStore, Catalog
    from matscreen.catalog.verify import verify_home

    settings = Settings()
    with Catalog(settings.catalog_url, create=False) as catalog:
        print(f"checking catalog {catalog.url_for_display} and the stores in {settings.home}")
        result = verify_home(
            catalog, ArtifactStore(settings.artifact_dir), settings.feature_dir, args.repair
        )
    print("checked " + ", ".join(f"{n} {what}" for what, n in result.checked.items()))
    for finding in result.findings:
        done = f" -> {finding.repaired}" if finding.repaired else ""
        print(f"{finding.area}: {finding.subject}: {finding.problem}{done}")
    left = result.unrepaired
    if not result.findings:
        print("no problems found")
    elif left:
        hint = "" if args.repair else " (`matscreen verify --repair` repairs what it can)"
        print(f"{len(result.findings)} problem(s) found, {len(left)} not repaired{hint}")
    else:
        print(f"{len(result.findings)} problem(s) found, all repaired")
    return 1 if left else 0


def add_verify_parser(commands: Any) -> None:
    """Add ``matscreen verify`` to the command's sub-parsers."""
    verify = commands.add_parser(
        "verify",
        help="check the catalog, artifacts, feature store and runs (like git fsck)",
        description="Check every entity id against its content, the catalog's constraints "
        "and triggers, every artifact and feature part against its sha256, and runs left "
        "'running' by a process that died. --repair quarantines bad files (their content "
        "is computed again by the next run that needs it), marks dead runs crashed and "
        "restores missing triggers.",
    )
    verify.add_argument("--repair", action="store_true", help="repair what can be repaired")
    verify.set_defaults(handler=_verify)
