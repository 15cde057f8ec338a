"""Held-out scores kept for a reused model: taken only for the same evaluation, verified
when read, and never in the way of a run."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest

from matscreen.catalog.scores import ScoreCache
from matscreen.tasks.hashing import sha256_text
from matscreen.tasks.models.evaluation import evaluate, scores_key, scoring_code
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec

LABELS = ["MagpieData mean Number", "MagpieData range Row", "noise", "density"]


def _rows(n: int, seed: int, labelled: bool = True) -> tuple[list[str], np.ndarray, list]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(LABELS)))
    y = 2.0 * x[:, 0] + np.sin(3 * x[:, 3]) + rng.normal(scale=0.1, size=n)
    return [f"r{seed}-{i}" for i in range(n)], x, list(y) if labelled else [None] * n


@pytest.fixture(scope="module")
def fitted():
    train, test = _rows(300, 1), _rows(120, 2)
    spec = ModelSpec(target="y", params={"n_estimators": 60, "max_depth": 3})
    return train_surrogate(spec, LABELS, train, 0), train, test


def test_scores_taken_from_the_cache_equal_those_computed(fitted, tmp_path: Path) -> None:
    model, train, test = fitted
    computed = evaluate(model, LABELS, train, test, seed=0, importance_repeats=2, baseline_trees=20)
    cache = ScoreCache(tmp_path / "scores")
    key = scores_key("model-1", LABELS, train, test, 0, importance_repeats=2, baseline_trees=20)
    assert cache.get(key) is None
    cache.put(key, computed.scores)
    kept = cache.get(key)
    assert kept == computed.scores
    again = evaluate(
        model, LABELS, train, test, seed=0, importance_repeats=2, baseline_trees=20, scores=kept
    )
    assert again.metrics == computed.metrics
    assert dataclasses.astuple(again.scores) == dataclasses.astuple(computed.scores)
    np.testing.assert_array_equal(again.predictions.prediction, computed.predictions.prediction)


def test_the_key_names_every_argument_the_scores_depend_on(fitted) -> None:
    _, train, test = fitted
    base = scores_key("model-1", LABELS, train, test, 0)
    assert base is not None and base == scores_key("model-1", LABELS, train, test, 0)
    shifted = (train[0], train[1] + 1e-12, train[2])
    relabelled = (test[0], test[1], [*test[2][:-1], None])
    renamed = (["other", *test[0][1:]], test[1], test[2])
    others = [
        scores_key("model-2", LABELS, train, test, 0),
        scores_key("model-1", [*LABELS[:-1], "volume"], train, test, 0),
        scores_key("model-1", LABELS, shifted, test, 0),
        scores_key("model-1", LABELS, train, relabelled, 0),
        scores_key("model-1", LABELS, train, renamed, 0),
        scores_key("model-1", LABELS, train, test, 1),
        scores_key("model-1", LABELS, train, test, 0, importance_repeats=3),
        scores_key("model-1", LABELS, train, test, 0, baseline_trees=301),
    ]
    assert len({base, *others}) == len(others) + 1


def test_a_folder_without_sources_has_no_code_hash(tmp_path: Path) -> None:
    from matscreen.tasks.hashing import code_sha256

    package = tmp_path / "package"
    package.mkdir()
    assert code_sha256(package) is None  # no __init__.py: an install without sources
    assert code_sha256(tmp_path / "missing") is None
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("x = 1\n")
    first = code_sha256(package)
    assert first is not None
    (package / "a.py").write_text("x = 2\n")
    assert code_sha256(package) not in {None, first}


def test_without_readable_scoring_code_nothing_is_kept(fitted, monkeypatch) -> None:
    _, train, test = fitted
    monkeypatch.setattr("matscreen.tasks.models.evaluation.scoring_code", lambda: None)
    assert scores_key("model-1", LABELS, train, test, 0) is None
    assert scoring_code() is not None  # the real one: this package's sources are readable


def test_a_damaged_or_foreign_file_is_quarantined_and_scored_again(
    fitted, tmp_path: Path, caplog
) -> None:
    model, train, test = fitted
    computed = evaluate(model, LABELS, train, test, seed=0, importance_repeats=1, baseline_trees=10)
    cache = ScoreCache(tmp_path / "scores")
    for number, damage in enumerate(
        [
            lambda text: text.replace('"importance"', '"importancE"'),  # the digest fails
            lambda text: "",  # emptied
            lambda text: "\x00\x01" + text[2:],  # binary garbage at the start
            lambda text: b"\xff\xfe" + text.encode(),  # not UTF-8
            _rows_not_objects,  # its digest right, its rows not objects
        ]
    ):
        key = f"{number:064x}"
        cache.put(key, computed.scores)
        path = tmp_path / "scores" / f"{key}.json"
        damaged = damage(path.read_text())
        path.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
        with caplog.at_level(logging.WARNING):
            assert cache.get(key) is None
        assert not path.exists()
        assert "damaged held-out scores" in caplog.text
    assert len(list((tmp_path / "scores" / "quarantine").iterdir())) == 5


def _rows_not_objects(text: str) -> str:
    document = json.loads(text.split("\n", 1)[1])
    document["importance"] = [1, 2]
    body = json.dumps(document)
    return f"{sha256_text(body)}\n{body}"


def test_nan_scores_round_trip_and_an_unwritable_folder_only_warns(tmp_path: Path, caplog) -> None:
    from matscreen.tasks.models.evaluation import HeldOutScores

    scores = HeldOutScores(
        [{"name": "dummy", "mae": np.float64("nan"), "n": np.int64(3)}],
        [{"feature": "density", "importance": 0.5}],
        [],
    )
    cache = ScoreCache(tmp_path / "scores")
    cache.put("a" * 64, scores)
    kept = cache.get("a" * 64)
    assert kept is not None and math.isnan(kept.baselines[0]["mae"])
    assert kept.baselines[0]["n"] == 3 and kept.importance == scores.importance
    cache.put(None, scores)  # no key (scoring code unknown): nothing is kept
    assert cache.get(None) is None
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        ScoreCache(blocked / "scores").put("b" * 64, scores)
    assert "held-out scores cannot be kept" in caplog.text


def test_unlabelled_held_out_rows_give_no_scores_to_take(fitted) -> None:
    model, train, _ = fitted
    unlabelled = _rows(30, 3, labelled=False)
    result = evaluate(model, LABELS, train, unlabelled, seed=0, importance_repeats=1)
    assert result.baselines == [] and result.importance == [] and result.calibration == []
