"""Saved pages of a Materials Project query, so that a killed read resumes where it stopped."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, content_hash
from matscreen.tasks.sources.base import SnapshotBuilder
from matscreen.tasks.spec import MPSourceSpec

if TYPE_CHECKING:
    from matscreen.tasks.sources.mp import SummaryClient

log = logging.getLogger(__name__)


#: The field pages are sorted on, so that ``_skip`` offsets mean the same on every request.
SORT_FIELD = "material_id"


class PageStore:
    """Pages of one query of one database release, saved as JSON files in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, index: int) -> Path:
        return self.folder / f"page-{index:05d}.json"

    def load(self, index: int) -> dict[str, Any] | None:
        """The saved page ``index``, or None if it is missing or unreadable."""
        path = self.path(index)
        if not path.is_file():
            return None
        try:
            page = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable saved page %s (%s); fetching it again", path, exc)
            return None
        if not isinstance(page, dict) or not isinstance(page.get("documents"), list):
            log.warning("ignoring saved page %s without a document list", path)
            return None
        return page

    def save(self, index: int, page: dict[str, Any]) -> None:
        write_atomically(self.path(index), canonical_json(page).encode("utf-8"))


def page_store(
    spec: MPSourceSpec,
    snapshot: SnapshotBuilder,
    endpoint: str,
    criteria: dict[str, Any],
    fields: list[str],
) -> PageStore | None:
    if snapshot.state_dir is None or not spec.resume:
        return None
    if not snapshot.database_version:
        log.warning(
            "source %s: %s reports no database version; pages are not saved for resuming",
            spec.name,
            endpoint,
        )
        return None
    identity = {
        "endpoint": endpoint,
        "criteria": criteria,
        "fields": fields,
        "sort": SORT_FIELD,
        "page_size": spec.chunk_size,
        "database_version": snapshot.database_version,
    }
    folder = Path(snapshot.state_dir) / "mp" / content_hash(identity)
    folder.mkdir(parents=True, exist_ok=True)
    description = folder / "query.json"
    if not description.is_file():
        write_atomically(description, canonical_json(identity).encode("utf-8"))
    return PageStore(folder)


def pages(
    client: SummaryClient,
    store: PageStore | None,
    criteria: dict[str, Any],
    fields: list[str],
    size: int,
) -> Iterator[list[dict[str, Any]]]:
    """Yield the documents of each page in order, from the store when saved, else fetched."""
    index = 0
    read = 0
    while True:
        page = store.load(index) if store is not None else None
        if page is None:
            page = client.fetch_page(criteria, fields, skip=index * size, limit=size)
            if store is not None:
                store.save(index, page)
        elif store is not None:
            log.info("source %s: page %d read from %s", client.spec.name, index, store.folder)
        documents = page["documents"]
        yield documents
        read += len(documents)
        total = page.get("total_doc")
        if len(documents) < size or (isinstance(total, int) and read >= total):
            return
        index += 1
