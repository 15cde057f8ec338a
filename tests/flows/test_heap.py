"""The garbage collector's tuning for large heaps (matscreen.flows.heap)."""

from __future__ import annotations

import gc
import weakref

import psutil
import pytest
from distributed import Client

from matscreen.flows import heap
from matscreen.flows.heap import THRESHOLDS, rare_collections, return_free_memory
from matscreen.flows.runtime import local_cluster


class _Node:
    """An object in a reference cycle with itself."""

    def __init__(self) -> None:
        self.me = self


def test_rare_collections_freezes_and_restores() -> None:
    before = gc.get_threshold()
    with rare_collections():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 1000  # the imported libraries, at least
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cyclic_garbage_is_still_collected_without_being_asked() -> None:
    # A loop that makes cyclic garbage must not grow without bound inside the block: the
    # young generation is still collected, every THRESHOLDS[0] allocations.
    with rare_collections():
        first = _Node()
        alive = weakref.ref(first)
        del first
        for _ in range(3 * THRESHOLDS[0]):
            _Node()
        assert alive() is None


def test_workers_of_the_local_cluster_collect_rarely() -> None:
    with local_cluster(1) as cluster, Client(cluster) as client:
        thresholds = client.run(gc.get_threshold)
        frozen = client.run(gc.get_freeze_count)
    assert list(thresholds.values()) == [THRESHOLDS]
    assert all(count > 1000 for count in frozen.values())


def test_nested_and_overlapping_blocks_restore_once() -> None:
    before = gc.get_threshold()
    with rare_collections():
        with rare_collections():
            assert gc.get_threshold() == THRESHOLDS
        # The inner block's end leaves the outer one's tuning in place.
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_an_exception_inside_the_block_restores_the_collector() -> None:
    before = gc.get_threshold()
    try:
        with rare_collections():
            raise RuntimeError("a failed flow")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_garbage_alive_at_the_start_is_collected_not_frozen() -> None:
    node = _Node()
    alive = weakref.ref(node)
    del node  # a cycle: only the collector frees it
    with rare_collections():
        assert alive() is None


def _resident_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.skipif(heap._trim is None, reason="glibc's malloc_trim is needed")
def test_free_memory_below_a_block_in_use_goes_back_to_the_system() -> None:
    # 200 MiB of 4 KiB blocks (glibc's heap, not Python's small-object arenas nor mmap),
    # then one block above them that stays: their freed pages cannot leave from the top.
    blocks = [bytes(4096) for _ in range(51_200)]
    pin = bytes(4096)
    before = _resident_mib()
    del blocks
    freed = _resident_mib()
    return_free_memory()
    after = _resident_mib()
    assert before - freed < 50, (before, freed)  # free() alone keeps them
    assert freed - after > 150, (freed, after)
    del pin
