"""The saved entries that make AFLOW and OPTIMADE re-runs incremental."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from matscreen.tasks.sources.entry_cache import EntryCache, read_incrementally
from matscreen.tasks.sources.records import RefreshCounts

QUERY = {"endpoint": "http://example.org", "filter": 'elements HAS "O"'}


def _date(document: dict[str, Any]) -> Any:
    return document.get("date")


def _saved(tmp_path: Path, documents: dict[str, dict[str, Any]]) -> EntryCache:
    cache = EntryCache.open(tmp_path, "test", QUERY)
    cache.refresh([(key, _date(doc)) for key, doc in documents.items()], documents, _date)
    cache.save()
    return EntryCache.open(tmp_path, "test", QUERY)


def test_saved_entries_are_read_back_by_the_same_query_only(tmp_path: Path) -> None:
    documents = {"a": {"date": "2024-01-01", "gap": float("nan")}, "b": {"date": None}}
    cache = _saved(tmp_path, documents)

    assert set(cache.entries) == {"a", "b"}
    assert cache.entries["b"].document == {"date": None}
    assert json.loads(cache.folder.joinpath("query.json").read_text()) == QUERY
    assert EntryCache.open(tmp_path, "test", {**QUERY, "filter": ""}).entries == {}


def test_new_undated_and_redated_entries_are_stale(tmp_path: Path) -> None:
    cache = _saved(tmp_path, {"a": {"date": "1"}, "b": {"date": "1"}, "c": {}})

    listing = [("a", "1"), ("b", "2"), ("c", None), ("d", "1"), ("d", "1")]
    assert cache.stale(listing) == ["b", "c", "d"]


def test_refresh_counts_and_drops_a_redated_entry_that_was_not_fetched(tmp_path: Path) -> None:
    cache = _saved(tmp_path, {"a": {"date": "1"}, "b": {"date": "1"}, "c": {"date": "1"}})

    # "b" was listed with a new date but not returned by the fetch (withdrawn meanwhile);
    # its saved copy is out of date and is not used.
    listing = [("a", "1"), ("b", "2"), ("d", "1")]
    documents, counts = cache.refresh(listing, {"d": {"date": "1"}}, _date)

    assert documents == {"a": {"date": "1"}, "d": {"date": "1"}}
    assert counts == RefreshCounts(3, new=1, changed=0, unchanged=1, removed=2, fetched=1)


def test_an_entry_that_does_not_match_its_hash_is_ignored(tmp_path: Path) -> None:
    cache = _saved(tmp_path, {"a": {"date": "1"}, "b": {"date": "1"}})
    content = json.loads(cache.path.read_text())
    content["entries"]["b"]["document"]["date"] = "edited"
    cache.path.write_text(json.dumps(content))

    assert set(EntryCache.open(tmp_path, "test", QUERY).entries) == {"a"}


class _Provider:
    """An in-memory query: full documents by id, counting what was asked of it."""

    source = "test"

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents
        self.asked: list[str] = []

    def everything(self) -> list[dict[str, Any]]:
        self.asked.append("everything")
        return list(self.documents.values())

    def listing(self) -> list[dict[str, Any]]:
        self.asked.append("listing")
        return [{"id": d.get("id"), "date": d.get("date")} for d in self.documents.values()]

    def fetch(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.asked.append("fetch " + ",".join(ids))
        return {d["id"]: d for d in self.documents.values() if d["id"] in ids}

    def id_of(self, entry: dict[str, Any]) -> str | None:
        return entry.get("id") or None

    def modified_of(self, entry: dict[str, Any]) -> Any:
        return entry.get("date")


def test_a_reread_fetches_only_new_and_changed_entries_in_listing_order(tmp_path: Path) -> None:
    provider = _Provider({k: {"id": k, "date": "1", "v": 0} for k in "abc"})
    first, changes = read_incrementally(EntryCache.open(tmp_path, "test", QUERY), provider)
    assert [(n, d["id"]) for n, d in first or []] == [(1, "a"), (2, "b"), (3, "c")]
    assert changes == RefreshCounts(3, new=3, changed=0, unchanged=0, removed=0, fetched=3)

    provider.documents["b"] = {"id": "b", "date": "2", "v": 1}
    provider.documents["d"] = {"id": "d", "date": "1", "v": 0}
    del provider.documents["a"]
    again, changes = read_incrementally(EntryCache.open(tmp_path, "test", QUERY), provider)

    assert provider.asked == ["everything", "listing", "fetch b,d"]
    assert again == [(n, provider.documents[k]) for n, k in enumerate("bcd", start=1)]
    assert changes == RefreshCounts(3, new=1, changed=1, unchanged=1, removed=1, fetched=2)

    # An entry listed but gone by the time it is fetched leaves a gap in the positions.
    provider.documents = {"e": {"id": "e", "date": "1"}, **provider.documents}
    provider.fetch = lambda ids: {}  # type: ignore[method-assign]
    third, _ = read_incrementally(EntryCache.open(tmp_path, "test", QUERY), provider)
    assert [(n, d["id"]) for n, d in third or []] == [(2, "b"), (3, "c"), (4, "d")]


def test_an_entry_without_an_id_saves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = _Provider({"a": {"id": "a", "date": "1"}, "b": {"id": "", "date": "1"}})
    cache = EntryCache.open(tmp_path, "test", QUERY)

    entries, changes = read_incrementally(cache, provider)

    assert entries == list(enumerate(provider.documents.values(), start=1)) and changes is None
    assert not cache.path.exists()
    assert "source test: the provider lists an entry without a usable id" in caplog.text

    # Once entries are saved, a listing with an unusable id sends the read back to a full one.
    del provider.documents["b"]
    read_incrementally(cache, provider)
    provider.documents["b"] = {"id": "", "date": "1"}
    assert read_incrementally(EntryCache.open(tmp_path, "test", QUERY), provider) == (None, None)
