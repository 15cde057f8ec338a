"""Pull structures from their sources into the catalog: the ``ingest-structures`` flow.

The same step opens every campaign: each source is read by a Prefect task (remote reads
resume from ``MATSCREEN_HOME/sources``), structures repeated across or within sources are
linked to their first record, and each read is written to the catalog in one transaction
(snapshot, records, failed records, ``alternateOf`` links).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from pydantic import TypeAdapter, ValidationError

from matscreen.catalog import Catalog
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.flows.heap import rare_collections
from matscreen.flows.runtime import run_recorder
from matscreen.flows.settings import Settings
from matscreen.tasks.errors import SpecError
from matscreen.tasks.files import open_atomically
from matscreen.tasks.sources.base import Item
from matscreen.tasks.sources.dedup import Deduplicator, mark_duplicates
from matscreen.tasks.sources.records import IngestResult, StructureRecord
from matscreen.tasks.spec import SourceSpec, describe_errors
from matscreen.tasks.steps import ingest_source


@dataclass(frozen=True)
class IngestedSources:
    """What reading and recording a list of sources produced.

    Attributes
    ----------
    results
        One result per source, duplicates marked.
    snapshot_ids
        The catalog id of each source's snapshot.
    record_ids
        ``{record id: catalog entity id}`` of every record.
    summary
        Per source: records read, new to the catalog, duplicates, failures, snapshot, and
        for an incremental read the entries new, changed, unchanged and removed at the
        source and the documents fetched (``changes``; None for a full read).
    """

    results: list[IngestResult]
    snapshot_ids: list[str]
    record_ids: dict[str, str]
    summary: list[dict[str, Any]]


def ingest_and_record(
    specs: Sequence[Any],
    recorder: CampaignRecorder,
    state_dir: Path,
    progress: Callable[[str], Callable[[Item], None] | None] | None = None,
    seen: Deduplicator | None = None,
) -> IngestedSources:
    """Read every source (in order), mark repeated structures and record each read.

    Parameters
    ----------
    specs
        Source specs; earlier ones win when two give the same structure.
    recorder
        Writes the reads into the catalog.
    state_dir
        Where remote sources keep fetched pages for resuming.
    progress
        ``progress(source name)`` returns a per-item callback (e.g. a progress bar's update).
    seen
        The deduplicator to mark repeats with, when later records (a campaign's candidate
        stream) are to be checked against these too.
    """
    ingests = [
        ingest_source(spec, state_dir, progress(spec.name) if progress else None) for spec in specs
    ]
    results = mark_duplicates((ingest.value for ingest in ingests), seen=seen)
    snapshot_ids: list[str] = []
    record_ids: dict[str, str] = {}
    summary = []
    for result, ingest in zip(results, ingests, strict=True):
        recorded = recorder.ingest(result, ingest.run, record_ids)
        snapshot_ids.append(recorded.snapshot_id)
        record_ids.update(recorded.record_ids)
        snapshot = result.snapshot
        summary.append(
            {
                "source": snapshot.source,
                "kind": snapshot.kind,
                "location": snapshot.location,
                "database_version": snapshot.database_version,
                "sha256": snapshot.sha256,
                "read": snapshot.n_rows,
                "records": len(result.records),
                "new": recorded.new_records,
                "duplicates": sum(r.duplicate_of is not None for r in result.records),
                "errors": len(result.failures),
                "snapshot_id": recorded.snapshot_id,
                "changes": asdict(result.changes) if result.changes is not None else None,
            }
        )
    return IngestedSources(results, snapshot_ids, record_ids, summary)


def parse_sources(sources: Sequence[dict[str, Any]]) -> list[Any]:
    """Validate source dicts (as in a campaign spec's ``sources``) into source specs.

    Raises
    ------
    SpecError
        Naming every key at fault (``sources.0.elements: …``).
    """
    adapter = TypeAdapter(list[SourceSpec])
    try:
        return adapter.validate_python(list(sources), context={"base_dir": os.getcwd()})
    except ValidationError as exc:
        raise SpecError(describe_errors(exc, prefix="sources")) from exc


def write_records(path: Path, results: Sequence[IngestResult]) -> int:
    """Write every record as one JSON line (readable again as a ``files`` source).

    The file appears whole or not at all (temporary file and rename). Returns the number of
    records written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_atomically(path, "w") as handle:
        for result in results:
            for record in result.records:
                handle.write(json.dumps(_record_line(record), sort_keys=True) + "\n")
                count += 1
    return count


def _record_line(record: StructureRecord) -> dict[str, Any]:
    line = asdict(record)
    line["id"] = record.id
    return line


@flow(name="ingest-structures")
def ingest_structures(
    sources: list[dict[str, Any]],
    output: str | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Read structure sources into the catalog, linking structures that repeat.

    Parameters
    ----------
    sources
        Source specs as in a campaign spec's ``sources`` list (``kind``, ``name`` …).
    output
        Optional JSON-lines file to write the records to.
    show_progress
        Draw a progress bar per source on standard error.

    Returns
    -------
    dict
        ``run_id``, ``sources`` (the per-source summary) and ``output``.
    """
    specs = parse_sources(sources)
    settings = Settings()
    parameters = {"sources": [spec.model_dump(mode="json") for spec in specs], "output": output}
    with Catalog(settings.catalog_url) as catalog:
        recorder = run_recorder(
            catalog, settings, "ingest-structures", parameters, CampaignRecorder
        )
        with recorder.running(), rare_collections(), _progress_bars(show_progress) as progress:
            ingested = ingest_and_record(specs, recorder, settings.source_state_dir, progress)
    written = write_records(Path(output), ingested.results) if output else None
    return {
        "run_id": recorder.run_id,
        "sources": ingested.summary,
        "output": str(Path(output).resolve()) if output else None,
        "records_written": written,
    }


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[Callable[[str], Callable[[Item], None] | None]]:
    """Yield ``start(source name)`` giving a tqdm bar's update on standard error, or None."""
    bars: list[Any] = []

    def start(name: str) -> Callable[[Item], None] | None:
        if not enabled:
            return None
        from tqdm import tqdm

        bar = tqdm(desc=f"source {name}", unit=" records")
        bars.append(bar)
        return lambda item: bar.update(1)

    try:
        yield start
    finally:
        for bar in bars:
            bar.close()
