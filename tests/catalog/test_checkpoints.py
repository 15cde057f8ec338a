"""Finished chunks kept for a resumed screen: round trip, keys, locks, and files that fail
their check."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matscreen.catalog.checkpoints import ChunkCheckpoints, FinishedChunk
from matscreen.tasks.chunk_keys import ChunkDigest, chunk_key
from matscreen.tasks.sources.records import RecordFailure, StructureRecord


def _record(source_id: str, a: float = 4.0) -> StructureRecord:
    structure = {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "lattice": {"matrix": [[a, 0, 0], [0, a, 0], [0, 0, a]]},
        "sites": [{"species": [{"element": "Na", "occu": 1}], "abc": [0, 0, 0]},
                  {"species": [{"element": "Cl", "occu": 1}], "abc": [0.5, 0.5, 0.5]}],
    }  # fmt: skip
    return StructureRecord(
        source="decorations",
        source_id=source_id,
        row=int(source_id),
        formula="NaCl",
        structure=structure,
        properties={},
        units={},
    )


def _chunk(key: str = "k" * 64) -> FinishedChunk:
    frame = pd.DataFrame(
        {
            "id": ["decorations:1", "decorations:2"],
            "formula": ["NaCl", "KCl"],
            "in_training": [False, True],
            "pred_band_gap": [0.0, 1.25],
            "lower_band_gap": [np.nan, 0.5],
            "reported_band_gap": [None, None],
        }
    )
    failure = RecordFailure("decorations", "3", 3, "stability", "no hull reference: Xe")
    return FinishedChunk(
        key=key,
        frame=frame,
        levels={"band_gap": 0.9},
        left_out=[failure],
        failures=[RecordFailure("decorations", "4", 4, "ingest", "no structure")],
        counts={"records": 4, "duplicates": np.int64(1)},  # numpy values are written too
        prediction_ids=["p1", "p2"],
        record_ids={"decorations:1": "e1", "decorations:2": "e2"},
        entity_ids=["e1", "e2", "e4"],
        kept_structures=[["decorations:1", "ab" * 32, "BaTiO3", 12.5]],
    )


def _opened(root: Path, campaign: str = "perovskite-screen", fingerprint: str = "f" * 64):
    store = ChunkCheckpoints(root, campaign, fingerprint)
    store.open()
    return store


def test_a_kept_chunk_reads_back_as_it_was(tmp_path: Path) -> None:
    store = _opened(tmp_path)
    chunk = _chunk()
    store.save(chunk)
    back = store.load(chunk.key)
    assert back is not None
    pd.testing.assert_frame_equal(back.frame, chunk.frame)
    for name in ("levels", "left_out", "failures", "counts", "prediction_ids", "record_ids",
                 "entity_ids", "kept_structures"):  # fmt: skip
        assert getattr(back, name) == getattr(chunk, name), name
    assert store.load("0" * 64) is None
    # A chunk of no key (a source read whole) is not kept.
    store.save(FinishedChunk())
    assert len(list(store.folder.iterdir())) == 2


def test_a_finished_run_removes_its_campaigns_chunks_but_not_those_in_use(tmp_path: Path) -> None:
    chunk = _chunk()
    store = _opened(tmp_path)
    stale = _opened(tmp_path, fingerprint="e" * 64)  # an earlier spec's, its run killed
    running = _opened(tmp_path, fingerprint="d" * 64)  # another spec's, running now
    other = _opened(tmp_path, campaign="other")
    for each in (store, stale, running, other):
        each.save(chunk)
    stale._lock.close()  # the killed run's lock went with its process
    store.clear()
    assert not store.folder.exists() and not stale.folder.exists()
    assert running.load(chunk.key) is not None and other.load(chunk.key) is not None
    # A second run of the same screen at the same time keeps and takes nothing.
    again = _opened(tmp_path, fingerprint="d" * 64)
    again.save(_chunk("a" * 64))
    assert again.load(chunk.key) is None and running.load("a" * 64) is None


@pytest.mark.parametrize(
    "damage",
    ["json bytes", "json value", "table bytes", "table gone", "layout", "truncated json",
     "json is a folder", "json is null", "kept structure", "record ids"],
)  # fmt: skip
def test_a_kept_chunk_that_fails_its_check_is_set_aside_and_screened_again(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = _opened(tmp_path)
    chunk = _chunk()
    store.save(chunk)
    document = store.folder / f"{chunk.key}.json"
    table = store.folder / f"{chunk.key}.parquet"
    digest, text = document.read_text().split("\n", 1)
    if damage == "json bytes":
        document.write_bytes(b"\x00" * 10)
    elif damage == "json value":  # valid JSON, one id changed: the digest no longer matches
        document.write_text(digest + "\n" + text.replace('"e1"', '"e9"'))
    elif damage == "table bytes":
        data = bytearray(table.read_bytes())
        data[len(data) // 2] ^= 0xFF
        table.write_bytes(bytes(data))
    elif damage == "table gone":
        table.unlink()
    elif damage == "layout":  # an older layout, its digest right
        from matscreen.tasks.hashing import sha256_text

        changed = text.replace('"layout":2', '"layout":1')
        document.write_text(sha256_text(changed) + "\n" + changed)
    elif damage == "json is a folder":
        document.unlink()
        document.mkdir()
    elif damage == "kept structure":  # a volume of none, its digest right
        from matscreen.tasks.hashing import sha256_text

        changed = text.replace("12.5]", "null]")
        assert changed != text
        document.write_text(sha256_text(changed) + "\n" + changed)
    elif damage == "record ids":  # a list where an object belongs, its digest right
        from matscreen.tasks.hashing import sha256_text

        document_value = json.loads(text)
        document_value["record_ids"] = ["e1"]
        changed = json.dumps(document_value)
        document.write_text(sha256_text(changed) + "\n" + changed)
    elif damage == "json is null":
        from matscreen.tasks.hashing import sha256_text

        document.write_text(sha256_text("null") + "\nnull")
    else:
        document.write_text(document.read_text()[:40])
    with caplog.at_level(logging.WARNING):
        assert store.load(chunk.key) is None
    if damage != "json is a folder":  # not a file: no chunk, nothing to set aside
        assert "screened again" in caplog.text and chunk.key in caplog.text
        assert not document.exists() and not table.exists()
        assert list((tmp_path / "quarantine").iterdir())
    # The chunk is screened again and kept anew.
    if damage != "json is a folder":
        store.save(chunk)
        assert store.load(chunk.key) is not None


def test_a_damaged_chunk_in_a_read_only_folder_is_not_taken_and_the_screen_goes_on(
    tmp_path: Path,
) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    store = _opened(tmp_path)
    chunk = _chunk()
    store.save(chunk)
    (store.folder / f"{chunk.key}.parquet").write_bytes(b"damaged")
    store.folder.chmod(0o500)
    try:
        assert store.load(chunk.key) is None
    finally:
        store.folder.chmod(0o700)


def test_a_chunk_that_cannot_be_kept_is_warned_of_once_and_the_screen_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _opened(tmp_path)
    store.folder.parent.joinpath(store.folder.name).write_text("a file where the folder goes")
    with caplog.at_level(logging.WARNING, logger="matscreen.catalog.checkpoints"):
        store.save(_chunk("a" * 64))
        store.save(_chunk("b" * 64))
    assert len(caplog.records) == 1 and "screens them again" in caplog.text
    assert store.load("a" * 64) is None
    # A home where no folder can be made: nothing is kept, with one warning.
    blocked = tmp_path / "screens"
    blocked.write_text("a file where the folder should be")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="matscreen.catalog.checkpoints"):
        unusable = _opened(blocked)
        unusable.save(_chunk())
    assert len(caplog.records) == 1 and unusable.load("k" * 64) is None


def test_a_chunk_key_names_its_content_and_everything_before_it() -> None:
    records = [_record("1"), _record("2", a=4.2)]
    failure = RecordFailure("decorations", "3", 3, "ingest", "unreadable")
    key = chunk_key("start", "decorations", records, [failure])
    assert key == chunk_key("start", "decorations", [_record("1"), _record("2", a=4.2)], [failure])
    others = [
        chunk_key("other start", "decorations", records, [failure]),
        chunk_key("start", "other source", records, [failure]),
        chunk_key("start", "decorations", records[::-1], [failure]),
        chunk_key("start", "decorations", [records[0], _record("2", a=4.3)], [failure]),
        chunk_key("start", "decorations", records, []),
        chunk_key("start", "decorations", records, [replace(failure, message="unreadable!")]),
    ]
    assert len({key, *others}) == len(others) + 1
    assert json.dumps(key)  # a plain hex string
    # Made as the items stream past, failed rows among the records: the same key.
    streamed = ChunkDigest("start", "decorations")
    for item in [records[0], failure, records[1]]:
        streamed.add(item)
    assert streamed.key() == key
