"""Finished chunks kept for a resumed screen: round trip, keys, and files that fail their
check."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matscreen.catalog.checkpoints import ChunkCheckpoints, FinishedChunk, chunk_key
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
        counts={"records": 4, "duplicates": 1},
        prediction_ids=["p1", "p2"],
        record_ids={"decorations:1": "e1", "decorations:2": "e2"},
        entity_ids=["e1", "e2", "e4"],
        duplicates={"decorations:5": "decorations:1"},
    )


def test_a_kept_chunk_reads_back_as_it_was(tmp_path: Path) -> None:
    store = ChunkCheckpoints(tmp_path, "perovskite screen", "f" * 64)
    chunk = _chunk()
    store.save(chunk)
    back = store.load(chunk.key)
    assert back is not None
    pd.testing.assert_frame_equal(back.frame, chunk.frame)
    for name in ("levels", "left_out", "failures", "counts", "prediction_ids", "record_ids",
                 "entity_ids", "duplicates"):  # fmt: skip
        assert getattr(back, name) == getattr(chunk, name), name
    assert store.load("0" * 64) is None
    # A chunk of no key (a source read whole) is not kept.
    store.save(FinishedChunk())
    assert len(list(store.folder.iterdir())) == 2
    # The campaign's folder holds every fingerprint's chunks; a finished run removes them
    # all (another spec's are stale), and no other campaign's.
    other_spec = ChunkCheckpoints(tmp_path, "perovskite screen", "e" * 64)
    other_campaign = ChunkCheckpoints(tmp_path, "other", "f" * 64)
    other_spec.save(chunk)
    other_campaign.save(chunk)
    assert store.folder.parent.name == "perovskite_screen"
    store.clear()
    assert store.load(chunk.key) is None and other_spec.load(chunk.key) is None
    assert other_campaign.load(chunk.key) is not None


def test_a_chunk_that_cannot_be_kept_is_warned_of_once_and_the_screen_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "screens"
    blocked.write_text("a file where the folder should be")
    store = ChunkCheckpoints(blocked, "perovskite", "f" * 64)
    with caplog.at_level(logging.WARNING, logger="matscreen.catalog.checkpoints"):
        store.save(_chunk("a" * 64))
        store.save(_chunk("b" * 64))
    assert len(caplog.records) == 1 and "screens them again" in caplog.text
    assert store.load("a" * 64) is None


@pytest.mark.parametrize(
    "damage",
    ["json bytes", "json value", "table bytes", "table gone", "layout", "truncated json"],
)
def test_a_kept_chunk_that_fails_its_check_is_removed_and_screened_again(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ChunkCheckpoints(tmp_path, "perovskite screen", "f" * 64)
    chunk = _chunk()
    store.save(chunk)
    document = store.folder / f"{chunk.key}.json"
    table = store.folder / f"{chunk.key}.parquet"
    stored = json.loads(document.read_text())
    if damage == "json bytes":
        document.write_bytes(b"\x00" * 10)
    elif damage == "json value":  # valid JSON, one id changed: the digest no longer matches
        stored["chunk"]["record_ids"]["decorations:1"] = "e9"
        document.write_text(json.dumps(stored))
    elif damage == "table bytes":
        data = bytearray(table.read_bytes())
        data[len(data) // 2] ^= 0xFF
        table.write_bytes(bytes(data))
    elif damage == "table gone":
        table.unlink()
    elif damage == "layout":
        stored["chunk"]["layout"] = 0
        document.write_text(json.dumps(stored))
    else:
        document.write_text(document.read_text()[:40])
    with caplog.at_level(logging.WARNING, logger="matscreen.catalog.checkpoints"):
        assert store.load(chunk.key) is None
    assert "screened again" in caplog.text and chunk.key in caplog.text
    assert not document.exists() and not table.exists()


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
