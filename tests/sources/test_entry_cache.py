"""The saved entries that make AFLOW and OPTIMADE re-runs incremental."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matscreen.tasks.sources.entry_cache import EntryCache
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
