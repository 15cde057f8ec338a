"""Re-run a recorded campaign run from its recorded spec and inputs, and compare the result.

``matscreen reproduce RUN`` reads the run's campaign spec from the catalog (paths already
resolved), checks that every file the run read still has the sha256 recorded in its
source snapshot, notes package versions that differ from the run's, runs the campaign again
and compares: the same inputs, spec and software give the same ranking entity (rankings are
content-addressed, so "identical" means byte-identical ranking tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matscreen.catalog import Catalog
from matscreen.catalog.nodes import Entity
from matscreen.flows.runtime import software_versions
from matscreen.tasks.errors import CatalogError, NotFoundError
from matscreen.tasks.hashing import file_sha256

#: Source kinds whose snapshot sha256 is the sha256 of one local file.
_FILE_KINDS = ("csv_cif", "files")


class ReproductionError(CatalogError):
    """A run cannot be reproduced as recorded (its input files changed or are gone)."""


@dataclass(frozen=True)
class RecordedRun:
    """What a campaign run read and produced, as the catalog holds it."""

    run_id: str
    spec: dict[str, Any]
    snapshots: list[Entity]
    ranking: Entity
    software: dict[str, str]


@dataclass(frozen=True)
class Comparison:
    """A reproduction's outcome: same ranking or not, and what differed on the way."""

    original: str
    reproduced: str
    identical: bool
    changed_snapshots: list[str] = field(default_factory=list)
    changed_software: dict[str, tuple[str, str]] = field(default_factory=dict)


def recorded_run(catalog: Catalog, run_id: str) -> RecordedRun:
    """Read a campaign run's spec, source snapshots and ranking from the catalog.

    Raises
    ------
    NotFoundError
        If ``run_id`` is not a finished campaign run of this catalog.
    """
    run = catalog.get_activity(run_id)
    if run.kind != "flow_run" or run.name != "screen-candidates":
        raise NotFoundError(f"{run_id} is a {run.kind} ({run.name}), not a campaign run")
    entities = catalog.run_entities(run_id, ["campaign_spec", "source_snapshot", "ranking"])
    by_kind: dict[str, list[Entity]] = {}
    for entity in entities:
        by_kind.setdefault(entity.kind, []).append(entity)
    if len(by_kind.get("campaign_spec", [])) != 1 or len(by_kind.get("ranking", [])) != 1:
        raise NotFoundError(
            f"campaign run {run_id} has no complete record (status {run.status}): "
            "it needs one spec and one ranking"
        )
    return RecordedRun(
        run_id=run_id,
        spec=by_kind["campaign_spec"][0].attributes["spec"],
        snapshots=by_kind.get("source_snapshot", []),
        ranking=by_kind["ranking"][0],
        software=run.software,
    )


def check_inputs(recorded: RecordedRun) -> None:
    """Check that every local file the run read is unchanged.

    Raises
    ------
    ReproductionError
        Naming each file that is missing or whose sha256 differs from the recorded one.
    """
    problems = []
    for snapshot in recorded.snapshots:
        a = snapshot.attributes
        path = Path(a["location"])
        if a["kind"] not in _FILE_KINDS or not path.is_file():
            if a["kind"] in _FILE_KINDS and not path.exists():
                problems.append(f"{a['source']}: {path} is gone")
            continue
        current = file_sha256(path)
        if current != a["sha256"]:
            problems.append(
                f"{a['source']}: {path} changed (sha256 {current[:12]}…, recorded "
                f"{a['sha256'][:12]}…)"
            )
    if problems:
        raise ReproductionError(
            f"run {recorded.run_id} cannot be reproduced as recorded: " + "; ".join(problems)
        )


def software_differences(recorded: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Packages whose installed version differs from the recorded one: name -> (then, now)."""
    now = software_versions()
    return {
        name: (version, now.get(name, "absent"))
        for name, version in sorted(recorded.items())
        if now.get(name, "absent") != version
    }


def write_spec(recorded: RecordedRun, folder: Path) -> Path:
    """Write the run's recorded spec as YAML into ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"spec-{recorded.run_id}.yaml"
    path.write_text(yaml.safe_dump(recorded.spec, sort_keys=False), encoding="utf-8")
    return path


def compare(catalog: Catalog, recorded: RecordedRun, new_run_id: str) -> Comparison:
    """Compare a reproduction with the recorded run it repeats."""
    again = recorded_run(catalog, new_run_id)
    before = {s.attributes["source"]: s.id for s in recorded.snapshots}
    after = {s.attributes["source"]: s.id for s in again.snapshots}
    return Comparison(
        original=recorded.ranking.id,
        reproduced=again.ranking.id,
        identical=recorded.ranking.id == again.ranking.id,
        changed_snapshots=sorted(name for name in before if before[name] != after.get(name)),
        changed_software=software_differences(recorded.software),
    )
