"""A featurization's finished batches are stored before the flow waits for more, together
when they finished together."""

from __future__ import annotations

from concurrent.futures import Future
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

CONFIG = preset_config("fast")


class _Batch:
    """A featurization task run's future, finished from the start (``ready``) or when the
    flow takes it; ``result`` may check what the store holds before it gives the batch."""

    def __init__(self, number: int, ready: bool, before: Any = None, error: bool = False):
        hashes = [f"h{number}-{i}" for i in range(10)]
        values = np.arange(20, dtype=float).reshape(10, 2) + 100 * number
        failures = {f"x{number}": f"x{number}: a featurizer failed"}
        self.batch = FeatureBatch(hashes, ["f0", "f1"], values, failures)
        self.keys = [*hashes, f"x{number}"]
        self.wrapped_future: Future[None] = Future()
        if ready:
            self.wrapped_future.set_result(None)
        self.before, self.error = before, error

    def result(self) -> Any:
        if self.before is not None:
            self.before()
        self.wrapped_future = Future()
        self.wrapped_future.set_result(None)
        if self.error:
            raise RuntimeError("the worker died")
        return SimpleNamespace(value=self.batch, run=f"run of {self.keys[0]}")


def _pending(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: list[_Batch]) -> Any:
    monkeypatch.setattr(featurize, "as_completed", iter)  # in the order given
    store = FeatureStore(tmp_path, CONFIG)
    keys = {f"record {k}": k for b in batches for k in b.keys}
    return featurize.PendingFeatures(keys, store.lookup([]), len(keys), batches, store)


def _parts(tmp_path: Path) -> int:
    return len(FeatureStore(tmp_path, CONFIG).part_files())


def test_batches_finished_together_are_stored_as_one_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = [_Batch(b, ready=True) for b in range(6)]
    table, runs, reused = _pending(tmp_path, monkeypatch, batches).collect()
    assert _parts(tmp_path) == 1
    assert len(runs) == 6 and reused == 0
    assert table.frame.shape == (60, 2) and len(table.failures) == 6
    assert table.frame.loc["record h5-9", "f1"] == 519.0
    # A new store instance reads every row back from the one part.
    again = FeatureStore(tmp_path, CONFIG).lookup(["h0-0", "h5-9", "x3"])
    assert again.loc["h5-9", "f1"] == 519.0 and again.loc["x3", "_error"].startswith("x3:")


def test_finished_batches_are_stored_before_the_flow_waits_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches 0 and 1 are finished; 2 is not: when the flow waits for it, the first two
    # are in the store already (a run killed then keeps them), then 2 is stored alone.
    def stored_first_two() -> None:
        found = FeatureStore(tmp_path, CONFIG).lookup(["h0-0", "h1-9", "h2-0"])
        assert sorted(found.index) == ["h0-0", "h1-9"]

    batches = [_Batch(0, True), _Batch(1, True), _Batch(2, False, before=stored_first_two)]
    table, _, _ = _pending(tmp_path, monkeypatch, batches).collect()
    assert _parts(tmp_path) == 2
    assert table.frame.shape == (30, 2)


def test_batches_that_each_had_to_be_waited_for_are_stored_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = [_Batch(b, ready=False) for b in range(4)]
    _pending(tmp_path, monkeypatch, batches).collect()
    assert _parts(tmp_path) == 4


def test_a_failed_batch_keeps_every_finished_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batch 1 fails: batch 0, taken before it, and batch 2, finished but not yet taken,
    # are stored before the error is raised; batch 3, not finished, is computed again.
    batches = [_Batch(0, True), _Batch(1, True, error=True), _Batch(2, True), _Batch(3, False)]
    with pytest.raises(RuntimeError, match="the worker died"):
        _pending(tmp_path, monkeypatch, batches).collect()
    stored = FeatureStore(tmp_path, CONFIG).lookup(["h0-0", "h1-0", "h2-0", "h3-0"])
    assert sorted(stored.index) == ["h0-0", "h2-0"]


def test_many_finished_rows_are_stored_without_waiting_for_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(featurize, "STORE_AT_ROWS", 22)  # two batches: 20 rows, 2 failures
    batches = [_Batch(b, ready=True) for b in range(6)]
    _pending(tmp_path, monkeypatch, batches).collect()
    parts = FeatureStore(tmp_path, CONFIG).part_files()
    assert sorted(len(pd.read_parquet(part)) for part in parts) == [22, 22, 22]
