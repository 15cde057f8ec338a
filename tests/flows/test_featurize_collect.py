"""A featurization's finished batches reach the feature store in few, large parts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from matscreen.catalog.features import FeatureStore
from matscreen.flows import featurize
from matscreen.tasks.featurize import preset_config
from matscreen.tasks.featurize.batch import FeatureBatch


class _Done:
    """A finished batch, as a Prefect future of the featurization task returns it."""

    def __init__(self, batch: FeatureBatch, clock: list[float], seconds: float) -> None:
        self.batch, self.clock, self.seconds = batch, clock, seconds

    def result(self) -> Any:
        self.clock[0] += self.seconds  # the time the batch took to arrive
        return SimpleNamespace(value=self.batch, run=f"run of {self.batch.ids[0]}")


def _collect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, batches: int = 6
) -> tuple[Any, FeatureStore]:
    clock = [0.0]
    monkeypatch.setattr(featurize, "as_completed", iter)
    monkeypatch.setattr(featurize, "monotonic", lambda: clock[0])
    store = FeatureStore(tmp_path, preset_config("fast"))
    futures, keys = [], {}
    for b in range(batches):
        hashes = [f"h{b}-{i}" for i in range(10)]
        values = np.arange(20, dtype=float).reshape(10, 2) + 100 * b
        failures = {f"x{b}": f"x{b}: a featurizer failed"}
        futures.append(_Done(FeatureBatch(hashes, ["f0", "f1"], values, failures), clock, seconds))
        keys.update({f"record {h}": h for h in [*hashes, f"x{b}"]})
    pending = featurize.PendingFeatures(keys, store.lookup([]), len(keys), futures, store)
    return pending.collect(), store


def test_batches_finished_together_are_stored_as_one_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (table, runs, reused), store = _collect(tmp_path, monkeypatch, seconds=0.1)
    assert len(store.part_files()) == 1
    assert len(runs) == 6 and reused == 0
    assert table.frame.shape == (60, 2) and len(table.failures) == 6
    assert table.frame.loc["record h5-9", "f1"] == 519.0
    # A new store instance reads every row back from the one part.
    again = FeatureStore(tmp_path, preset_config("fast")).lookup(["h0-0", "h5-9", "x3"])
    assert again.loc["h5-9", "f1"] == 519.0 and again.loc["x3", "_error"].startswith("x3:")


def test_slow_batches_are_stored_as_they_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch that took longer than STORE_EVERY_S is stored at once: a run killed later
    # keeps it.
    (table, _, _), store = _collect(tmp_path, monkeypatch, seconds=featurize.STORE_EVERY_S)
    assert len(store.part_files()) == 6
    assert table.frame.shape == (60, 2)


def test_many_waiting_rows_are_stored_in_parts_no_compaction_rewrites(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(featurize, "SMALL_PART_ROWS", 22)
    (table, _, _), store = _collect(tmp_path, monkeypatch, seconds=0.1)
    # Two batches are 22 rows: three parts of two batches each.
    sizes = sorted(len(pd.read_parquet(part)) for part in store.part_files())
    assert sizes == [22, 22, 22]
    assert table.frame.shape == (60, 2)
