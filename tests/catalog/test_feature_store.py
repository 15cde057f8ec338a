"""The feature store: hits, misses, partial hits, cached failures, concurrent writers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from matscreen.catalog.features import COMPACT_AFTER_PARTS, FeatureStore
from matscreen.tasks.featurize import preset_config
from matscreen.tasks.hashing import structure_hash

CONFIG = preset_config("fast")


def _rows(keys: list[str], width: int = 3, offset: float = 0.0) -> pd.DataFrame:
    values = np.arange(len(keys) * width, dtype=float).reshape(len(keys), width) + offset
    return pd.DataFrame(
        values, index=pd.Index(keys, name="key"), columns=[f"f{i}" for i in range(width)]
    )


def test_miss_then_hit_then_partial(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    assert store.lookup(["a", "b"]).empty  # miss: nothing stored yet
    store.add(_rows(["a", "b"]), {"c": "c: ElementProperty failed: KeyError: 'X'"})

    hit = store.lookup(["b", "a"])
    assert sorted(hit.index) == ["a", "b"]
    assert hit.loc["b", "f1"] == 4.0 and hit["_error"].isna().all()

    partial = store.lookup(["a", "c", "d"])
    assert sorted(partial.index) == ["a", "c"]  # d must be computed
    assert partial.loc["c", "_error"].endswith("KeyError: 'X'")
    assert np.isnan(partial.loc["c", "f0"])


def test_a_new_featurization_or_version_is_a_new_store(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    store.add(_rows(["a"]), {})
    other = dict(CONFIG, versions={**CONFIG["versions"], "matminer": "0.0.1"})
    assert FeatureStore(tmp_path, other).lookup(["a"]).empty
    assert FeatureStore(tmp_path, CONFIG).lookup(["a"]).index.tolist() == ["a"]


def test_concurrent_writers_and_compaction_lose_nothing(tmp_path: Path) -> None:
    def write(start: int) -> None:
        store = FeatureStore(tmp_path, CONFIG)
        for i in range(start, start + 10):
            store.add(_rows([f"k{i}"], offset=i), {})

    threads = [threading.Thread(target=write, args=(start,)) for start in (0, 10, 20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = FeatureStore(tmp_path, CONFIG)
    assert len(store._parts()) == 30 > COMPACT_AFTER_PARTS
    store.compact()
    assert len(store._parts()) == 1
    rows = store.lookup([f"k{i}" for i in range(30)])
    assert len(rows) == 30
    assert rows.loc["k17", "f0"] == 17.0  # each row kept its own values


def test_structure_hash_is_the_crystal_not_its_labels() -> None:
    lattice = Lattice.cubic(3.905)
    coords = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    a = Structure(lattice, ["Sr", "Ti", "O", "O", "O"], coords)
    b = Structure(
        lattice,
        ["Sr", "Ti", "O", "O", "O"],
        coords,
        labels=["A", "B", "X", "X", "X"],
        site_properties={"magmom": [0, 0, 0, 0, 0]},
    )
    swapped = Structure(lattice, ["Ti", "Sr", "O", "O", "O"], coords)
    assert structure_hash(a.as_dict()) == structure_hash(b.as_dict())
    assert structure_hash(a.as_dict()) != structure_hash(swapped.as_dict())
    moved = a.copy()
    moved.translate_sites([0], [1e-4, 0, 0])
    assert structure_hash(moved.as_dict()) != structure_hash(a.as_dict())


def test_written_parts_are_readable_by_the_group(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        part = FeatureStore(tmp_path, CONFIG).add(_rows(["a"]), {})
    finally:
        os.umask(previous)
    assert part is not None and part.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("failures", [{}, {"x": "x: failed"}])
def test_empty_writes(tmp_path: Path, failures: dict) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    written = store.add(_rows([]), failures)
    assert (written is None) == (not failures)


def test_structure_hash_is_the_canonical_hash_for_nan_numpy_and_oxidized_input() -> None:
    import json as _json

    import numpy as _np
    from pymatgen.core import Lattice as _Lattice
    from pymatgen.core import Structure as _Structure

    from matscreen.tasks.hashing import content_hash, structure_hash

    def canonical(d: dict) -> str:
        lattice = [[round(x, 6) for x in row] for row in d["lattice"]["matrix"]]
        sites = [
            [
                sorted(
                    (sp["element"], sp.get("oxidation_state"), round(sp.get("occu", 1.0), 6))
                    for sp in site["species"]
                ),
                [round(x, 6) for x in site["abc"]],
            ]
            for site in d["sites"]
        ]
        return content_hash({"lattice": lattice, "sites": sites, "charge": d.get("charge") or 0})

    plain = _Structure(
        _Lattice.cubic(3.9), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
    )
    oxidized = plain.copy()
    oxidized.add_oxidation_state_by_element({"Sr": 2, "Ti": 4, "O": -2})
    with_nan = plain.as_dict()
    with_nan["sites"][0]["abc"] = [float("nan"), 0.0, 0.0]
    with_numpy = plain.as_dict()
    with_numpy["lattice"]["matrix"] = _np.array(with_numpy["lattice"]["matrix"])
    with_numpy["sites"][0]["species"][0]["oxidation_state"] = _np.int64(2)
    for d in (
        plain.as_dict(),
        oxidized.as_dict(),
        with_nan,
        with_numpy,
        _json.loads(_json.dumps(plain.as_dict())),
    ):
        assert structure_hash(d) == canonical(d)


def test_lookup_reads_only_the_parts_holding_the_rows_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matscreen.catalog.features as features

    store = FeatureStore(tmp_path, CONFIG)
    for part in range(4):
        keys = [f"p{part}k{i}" for i in range(10)]
        store.add(_rows(keys, offset=100.0 * part), {f"p{part}bad": "no"} if part == 2 else {})
    read: list[str] = []
    real = features.parquet_to_frame

    def counting(data: bytes) -> pd.DataFrame:
        read.append("part")
        return real(data)

    monkeypatch.setattr(features, "parquet_to_frame", counting)
    rows = store.lookup(["p1k3", "p2bad", "p2k0", "missing"])
    assert sorted(rows.index) == ["p1k3", "p2bad", "p2k0"]
    assert len(read) == 2  # parts 1 and 2 only
    assert rows.loc["p1k3", "f0"] == 100.0 + 9 and rows.loc["p2bad", "_error"] == "no"
    assert len(store) == 41
    # A new part written by another store object is seen by the next look-up.
    FeatureStore(tmp_path, CONFIG).add(_rows(["late"]), {})
    assert store.lookup(["late"]).index.tolist() == ["late"]


def test_compaction_merges_small_parts_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import matscreen.catalog.features as features

    monkeypatch.setattr(features, "SMALL_PART_ROWS", 5)
    store = FeatureStore(tmp_path, CONFIG)
    big = store.add(_rows([f"big{i}" for i in range(8)]), {})
    for i in range(COMPACT_AFTER_PARTS + 1):
        store.add(_rows([f"s{i}"]), {})
    store.compact()
    parts = store._parts()
    assert len(parts) == 2  # the large part as it was, and the merged small ones
    assert len(store) == 8 + COMPACT_AFTER_PARTS + 1
    assert sorted(store.lookup(["big7", "s0"]).index) == ["big7", "s0"]
    assert big is not None and big in parts


def test_a_part_the_store_wrote_is_verified_when_read(tmp_path: Path) -> None:
    # The store indexes its own parts without reading them back; a part damaged on disk
    # afterwards is still caught when its rows are read, and its rows count as missing.
    store = FeatureStore(tmp_path, CONFIG)
    part = store.add(_rows(["a", "b"]), {})
    assert part is not None
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert store.lookup(["a", "b"]).empty
    assert not part.exists()
    assert len(list((store.folder / "quarantine").iterdir())) == 1
    store.add(_rows(["a"]), {})  # computed again
    assert store.lookup(["a", "b"]).index.tolist() == ["a"]
