"""The held-out split: fixed per record by id and seed, disjoint, about the asked fraction."""

from __future__ import annotations

import math

import pytest

from matscreen.tasks.errors import SplitError
from matscreen.tasks.spec import SplitSpec
from matscreen.tasks.split import choose_split


def test_split_is_disjoint_complete_and_near_the_fraction() -> None:
    ids = [f"s:{i}" for i in range(5000)]
    split = choose_split(ids, SplitSpec(test_fraction=0.2, seed=3))
    assert set(split.test_ids).isdisjoint(split.train_ids)
    assert set(split.test_ids) | set(split.train_ids) == set(ids)
    spread = 3 * math.sqrt(5000 * 0.2 * 0.8)  # three binomial standard deviations
    assert abs(len(split.test_ids) - 1000) < spread


def test_split_depends_on_seed_not_on_order() -> None:
    ids = [f"s:{i}" for i in range(300)]
    a = choose_split(ids, SplitSpec(seed=1))
    b = choose_split(list(reversed(ids)), SplitSpec(seed=1))
    c = choose_split(ids, SplitSpec(seed=2))
    assert a == b
    assert a.test_ids != c.test_ids


def test_new_records_never_move_old_ones_between_parts() -> None:
    old = [f"mp:{i}" for i in range(400)]
    grown = old + [f"mp:{i}" for i in range(400, 700)]
    before = choose_split(old, SplitSpec(seed=5))
    after = choose_split(grown, SplitSpec(seed=5))
    assert set(before.test_ids) == set(after.test_ids) & set(old)
    assert set(before.train_ids) == set(after.train_ids) & set(old)


def test_split_refuses_repeated_or_too_few_ids() -> None:
    with pytest.raises(SplitError, match=r"record ids repeat: \['a'\]"):
        choose_split(["a", "a", "b"], SplitSpec())
    with pytest.raises(SplitError, match="at least 2"):
        choose_split(["a"], SplitSpec())
