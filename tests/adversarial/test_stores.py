"""Stored bytes are verified where they are read: feature parts and artifacts.

A part or artifact whose bytes changed on disk is never used: it is moved to the store's
``quarantine/`` folder, named in a warning, and its content counts as not stored, so the
next run computes it again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matscreen.catalog.artifacts import ArtifactStore
from matscreen.catalog.features import FeatureStore
from matscreen.tasks.errors import ArtifactError
from matscreen.tasks.featurize import preset_config

CONFIG = preset_config("fast")


def _rows(keys: list[str]) -> pd.DataFrame:
    values = np.arange(len(keys) * 3, dtype=float).reshape(len(keys), 3) + 60.0
    return pd.DataFrame(values, index=pd.Index(keys, name="key"), columns=["f0", "f1", "f2"])


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _value_offset(path: Path, value: float) -> int:
    """Where the float64 ``value`` is stored in a part (uncompressed page)."""
    return path.read_bytes().index(np.float64(value).tobytes())


@pytest.mark.parametrize(
    "damage",
    [
        "flipped bit in a value",
        "value overwritten with -1.27e308",
        "truncated",
        "emptied",
        "written without a checksum",
    ],
)
def test_a_damaged_feature_part_is_quarantined_and_its_rows_recomputed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    kept = store.add(_rows(["a", "b"]), {})
    part = store.add(_rows(["c", "d"]), {"e": "e: failed"})
    assert kept is not None and part is not None
    if damage == "flipped bit in a value":
        _flip_bit(part, _value_offset(part, 63.0))
    elif damage == "value overwritten with -1.27e308":
        data = part.read_bytes().replace(
            np.float64(63.0).tobytes(), np.float64(-1.27e308).tobytes()
        )
        part.write_bytes(data)
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:100])
    elif damage == "emptied":
        part.write_bytes(b"")
    else:
        part = part.rename(part.with_name("part-20260101T000000-0123abcd.parquet"))

    with caplog.at_level(logging.WARNING):
        found = FeatureStore(tmp_path, CONFIG).lookup(["a", "b", "c", "d", "e"])
    # The intact part's rows come back with their values; the damaged part's do not.
    assert sorted(found.index) == ["a", "b"]
    assert found.loc["a", "f0"] == 60.0
    assert not part.exists()
    moved = list((store.folder / "quarantine").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(part.name)
    assert any(str(part) in r.getMessage() for r in caplog.records), caplog.text

    # The next run computes them again and stores them in a new, intact part.
    store = FeatureStore(tmp_path, CONFIG)
    store.add(_rows(["c", "d"]), {"e": "e: failed"})
    again = FeatureStore(tmp_path, CONFIG).lookup(["c", "d", "e"])
    assert again.loc["c", "f0"] == 60.0 and again.loc["d", "f2"] == 65.0
    assert again.loc["e", "_error"] == "e: failed"


def test_a_part_damaged_after_indexing_is_not_read(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    part = store.add(_rows(["a", "b"]), {})
    assert part is not None
    assert len(store) == 2  # indexed now
    _flip_bit(part, _value_offset(part, 61.0))
    assert store.lookup(["a", "b"]).empty  # read again: checked again
    assert len(store) == 0


def test_compaction_leaves_damaged_parts_out(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    parts = [store.add(_rows([f"k{i}"]), {}) for i in range(20)]
    assert all(parts)
    parts[3].write_bytes(b"PAR1 not really")  # type: ignore[union-attr]
    store.compact()
    found = FeatureStore(tmp_path, CONFIG).lookup([f"k{i}" for i in range(20)])
    assert sorted(found.index) == sorted(f"k{i}" for i in range(20) if i != 3)
    assert len(list(store.folder.glob("part-*.parquet"))) == 1


def test_a_corrupt_artifact_is_quarantined_and_stored_anew(tmp_path: Path) -> None:
    artifacts = ArtifactStore(tmp_path)
    digest = artifacts.put_bytes(b'{"model": "xgboost", "n_estimators": 300}')
    path = artifacts.path_for(digest)
    path.write_bytes(b'{"model": "xgboost", "n_estimators": 301}')  # still valid JSON

    assert artifacts.problem(digest) is not None
    with pytest.raises(ArtifactError, match=f"artifact {path} is corrupt.*moved to"):
        artifacts.get_bytes(digest)
    assert not path.exists()
    with pytest.raises(ArtifactError, match="is missing"):
        artifacts.get_bytes(digest)
    # A run that computes the same content stores it again; a corrupt copy in place is
    # replaced rather than trusted.
    assert artifacts.put_bytes(b'{"model": "xgboost", "n_estimators": 300}') == digest
    path.write_bytes(b"garbage")
    assert artifacts.put_bytes(b'{"model": "xgboost", "n_estimators": 300}') == digest
    assert artifacts.get_bytes(digest) == b'{"model": "xgboost", "n_estimators": 300}'
    assert len(list((tmp_path / "quarantine").iterdir())) == 2
    assert list(artifacts.stored()) == [digest]
