"""Entries of one remote query kept between reads, so that a re-run fetches only what changed.

A provider that gives every entry an id and a modification time (OPTIMADE's
``last_modified``, AFLOW's ``aflowlib_date``) can be re-read in two steps: list the id and
modification time of every entry the query selects, which costs a few bytes per entry, then
fetch full documents only for the entries that are new, whose modification time differs from
the saved one, or that have none. Every other document is the one saved by the previous read.

The entries of one query are saved as one JSON file, ``<state_dir>/<kind>/<key>/entries.json``,
where ``<key>`` is the content hash of what identifies the query (endpoint, filter, fields
asked), written out in ``query.json`` beside it. Each entry keeps its modification time, the
sha256 of its document's canonical JSON and the document as received. The file is replaced
whole (a temporary file, then a rename), so a read killed at any point leaves either the
previous file or the new one. An unreadable file, or an entry whose document does not match
its hash, is ignored: those entries are simply fetched again.

:func:`read_incrementally` is that algorithm, for any source that describes its query as an
:class:`IncrementalQuery` (the AFLOW and OPTIMADE sources do).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, content_hash
from matscreen.tasks.sources.records import RefreshCounts

log = logging.getLogger(__name__)

#: Name of the file holding the saved entries of a query.
ENTRIES_FILE = "entries.json"

#: One listed entry: its id and its modification time (None when the provider gives none).
Listed = tuple[str, Any]


@dataclass(frozen=True)
class SavedEntry:
    """One entry as the previous read received it.

    Attributes
    ----------
    modified
        The entry's modification time as the provider wrote it (any JSON value), or None.
    sha256
        sha256 of the canonical JSON of ``document``.
    document
        The full entry as received.
    """

    modified: Any
    sha256: str
    document: dict[str, Any]


class EntryCache:
    """The saved entries of one query of one remote source, by entry id.

    Use :meth:`open` to load them, :meth:`stale` to learn which listed ids need their full
    document fetched, :meth:`refresh` to combine the fetched and the saved documents, and
    :meth:`save` to keep the result for the next read.

    Parameters
    ----------
    folder
        The query's folder, ``<state_dir>/<kind>/<key>``.
    entries
        The saved entries by id.
    """

    def __init__(self, folder: Path, entries: dict[str, SavedEntry]) -> None:
        self.folder = folder
        self.entries = entries

    @property
    def path(self) -> Path:
        """The file the entries are saved in."""
        return self.folder / ENTRIES_FILE

    @classmethod
    def open(cls, state_dir: Path, kind: str, identity: Mapping[str, Any]) -> EntryCache:
        """Load the entries saved for a query (none on its first read).

        Parameters
        ----------
        state_dir
            The read's state folder.
        kind
            The source kind, the first folder level (``optimade``, ``aflow``).
        identity
            What identifies the query: JSON values whose content hash names its folder.
        """
        folder = Path(state_dir) / kind / content_hash(dict(identity))
        folder.mkdir(parents=True, exist_ok=True)
        description = folder / "query.json"
        if not description.is_file():
            write_atomically(description, canonical_json(dict(identity)).encode("utf-8"))
        return cls(folder, _load_entries(folder / ENTRIES_FILE))

    def stale(self, listing: Sequence[Listed]) -> list[str]:
        """The listed ids whose full document must be fetched, each once, in listing order.

        An entry is fetched when none is saved under its id, when it has no modification time,
        or when its modification time differs from the saved one.
        """
        wanted = (
            entry_id for entry_id, modified in listing if not self._current(entry_id, modified)
        )
        return list(dict.fromkeys(wanted))

    def _current(self, entry_id: str, modified: Any) -> bool:
        """Whether the saved copy of an entry is the one listed with ``modified``."""
        saved = self.entries.get(entry_id)
        return saved is not None and modified is not None and modified == saved.modified

    def refresh(
        self,
        listing: Sequence[Listed],
        fetched: Mapping[str, dict[str, Any]],
        modified_of: Callable[[dict[str, Any]], Any],
    ) -> tuple[dict[str, dict[str, Any]], RefreshCounts]:
        """Keep exactly the listed entries, from ``fetched`` or else as saved.

        A listed id that was not fetched and has no current saved copy (an entry the provider
        removed between the listing and the fetch) is left out.

        Parameters
        ----------
        listing
            ``(id, modification time)`` of every entry the provider lists now.
        fetched
            The full documents fetched for :meth:`stale` ids, by id.
        modified_of
            Reads the modification time of a full document.

        Returns
        -------
        documents
            The full document of every entry kept, by id.
        counts
            New, changed, unchanged and removed entries, and the documents fetched.
        """
        kept: dict[str, SavedEntry] = {}
        new = changed = 0
        for entry_id, modified in listing:
            if entry_id in kept:
                continue
            saved = self.entries.get(entry_id)
            document = fetched.get(entry_id)
            if document is not None:
                entry = SavedEntry(modified_of(document), content_hash(document), document)
                kept[entry_id] = entry
                if saved is None:
                    new += 1
                elif saved.sha256 != entry.sha256:
                    changed += 1
            elif saved is not None and self._current(entry_id, modified):
                kept[entry_id] = saved
        removed = sum(entry_id not in kept for entry_id in self.entries)
        self.entries = kept
        counts = RefreshCounts(
            listed=len(listing),
            new=new,
            changed=changed,
            unchanged=len(kept) - new - changed,
            removed=removed,
            fetched=len(fetched),
        )
        return {entry_id: entry.document for entry_id, entry in kept.items()}, counts

    def save(self) -> None:
        """Write the entries to :attr:`path`, replacing the previous file in one step."""
        content = {
            entry_id: {
                "modified": entry.modified,
                "sha256": entry.sha256,
                "document": entry.document,
            }
            for entry_id, entry in self.entries.items()
        }
        # Plain JSON keeps every value as received (canonical JSON would turn NaN into null),
        # so a document read back hashes and converts exactly like the one fetched.
        write_atomically(self.path, json.dumps({"entries": content}).encode("utf-8"))


def _load_entries(path: Path) -> dict[str, SavedEntry]:
    """The entries saved in ``path``; none if it is missing or unreadable."""
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_bytes())["entries"]
        if not isinstance(saved, dict):
            raise ValueError("'entries' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable saved entries %s (%s); fetching them again", path, exc)
        return {}
    entries: dict[str, SavedEntry] = {}
    for entry_id, item in saved.items():
        document = item.get("document") if isinstance(item, dict) else None
        if isinstance(document, dict) and content_hash(document) == item.get("sha256"):
            entries[entry_id] = SavedEntry(item.get("modified"), item["sha256"], document)
        else:
            log.warning("ignoring saved entry %s in %s: it does not match its hash", entry_id, path)
    return entries


class IncrementalQuery(Protocol):
    """What :func:`read_incrementally` needs of one remote query.

    Attributes
    ----------
    source
        The source's name, for messages.
    """

    source: str

    def everything(self) -> Iterable[Any]:
        """Every entry the query selects, in full."""
        ...

    def listing(self) -> Iterable[Any]:
        """Every entry the query selects, with its id and modification time only."""
        ...

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The full entries of ``ids``, by id."""
        ...

    def id_of(self, entry: Any) -> str | None:
        """An entry's id; None if it has none that can be saved and asked for again."""
        ...

    def modified_of(self, entry: Any) -> Any:
        """An entry's modification time as the provider wrote it, or None."""
        ...


def read_incrementally(
    cache: EntryCache, query: IncrementalQuery
) -> tuple[list[tuple[int, Any]] | None, RefreshCounts | None]:
    """The query's entries in listing order, fetching in full only new and changed ones.

    With nothing saved yet, the query is read in full, its entries being their own listing.
    The refreshed entries are saved for the next read.

    Returns
    -------
    entries
        ``(position, entry)`` of every entry kept, in listing order; ``position`` is the
        entry's place in the listing from 1 (an entry the provider dropped between the
        listing and the fetch leaves a gap), and an id listed twice appears twice. None when
        a saved query's listing holds an entry without a usable id: the caller then reads
        the query in full. On a first read with such an entry, every entry as read.
    changes
        New, changed, unchanged and removed entries; None when nothing could be saved
        because an entry has no usable id.
    """
    if not cache.entries:
        entries = list(query.everything())
        listing = _listing(entries, query)
        if listing is None:
            return list(enumerate(entries, start=1)), None
        fetched: dict[str, dict[str, Any]] = {}
        for (entry_id, _), entry in zip(listing, entries, strict=True):
            fetched.setdefault(entry_id, entry)
    else:
        listing = _listing(query.listing(), query)
        if listing is None:
            return None, None
        fetched = query.fetch(cache.stale(listing))
    documents, changes = cache.refresh(listing, fetched, query.modified_of)
    cache.save()
    log.info("source %s: %s", query.source, changes.describe())
    kept = [
        (position, documents[entry_id])
        for position, (entry_id, _) in enumerate(listing, start=1)
        if entry_id in documents
    ]
    return kept, changes


def fetch_in_batches(
    ids: Sequence[str],
    batch_size: int,
    ask: Callable[[Sequence[str]], Iterable[Any]],
    id_of: Callable[[Any], str | None],
) -> dict[str, dict[str, Any]]:
    """The entries of ``ids`` by id, asked for ``batch_size`` ids at a time: ``ask(batch)``
    yields what the provider answers for a batch, of which only the entries asked for are
    kept (the first of an id answered twice)."""
    fetched: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        asked = set(batch)
        for entry in ask(batch):
            entry_id = id_of(entry)
            if entry_id in asked:
                fetched.setdefault(entry_id, entry)
    return fetched


def _listing(entries: Iterable[Any], query: IncrementalQuery) -> list[Listed] | None:
    """``(id, modification time)`` of every entry; None if one has no usable id."""
    listing: list[Listed] = []
    for entry in entries:
        entry_id = query.id_of(entry)
        if entry_id is None:
            log.warning(
                "source %s: the provider lists an entry without a usable id (%.120r); every "
                "entry is fetched and none is saved",
                query.source,
                entry,
            )
            return None
        listing.append((entry_id, query.modified_of(entry)))
    return listing
