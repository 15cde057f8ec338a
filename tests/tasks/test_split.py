"""The held-out split: deterministic, disjoint, independent of input order."""

from __future__ import annotations

import pytest

from matscreen.tasks.errors import ModelError
from matscreen.tasks.spec import SplitSpec
from matscreen.tasks.split import choose_split


def test_split_is_disjoint_complete_and_sized() -> None:
    ids = [f"s:{i}" for i in range(1000)]
    split = choose_split(ids, SplitSpec(test_fraction=0.2, seed=3))
    assert len(split.test_ids) == 200 and len(split.train_ids) == 800
    assert set(split.test_ids).isdisjoint(split.train_ids)
    assert set(split.test_ids) | set(split.train_ids) == set(ids)


def test_split_depends_on_seed_not_on_order() -> None:
    ids = [f"s:{i}" for i in range(300)]
    a = choose_split(ids, SplitSpec(seed=1))
    b = choose_split(list(reversed(ids)), SplitSpec(seed=1))
    c = choose_split(ids, SplitSpec(seed=2))
    assert a == b
    assert a.test_ids != c.test_ids


def test_split_refuses_repeated_or_too_few_ids() -> None:
    with pytest.raises(ModelError, match="repeat"):
        choose_split(["a", "a", "b"], SplitSpec())
    with pytest.raises(ModelError, match="at least 2"):
        choose_split(["a"], SplitSpec())
