"""The cyclic garbage collector, tuned for processes that hold a large heap.

CPython collects its youngest generation every 700 net container allocations and, every
hundred or so of those, walks every live container. A screening process holds the
imported libraries (pymatgen, matminer, Prefect, Dask: about half a million containers)
and builds millions of small dicts and lists (structure dicts, catalog entities), so the
collector, not the work, can take most of the time: unpickling a batch of 4,000
candidate structure dicts took 100 µs a structure in a process that had imported
pymatgen and matminer, and 10 µs with the collector paused; building a candidate's
structure dict next to 10,000 earlier ones took 140 µs instead of 18; a Dask worker
featurized a batch of double perovskites in 236 µs a candidate before this tuning and
103 µs after.

:func:`collect_rarely` freezes what is alive (those objects are left out of every later
collection) and raises the thresholds. Reference counting still frees acyclic garbage at
once; only cyclic garbage waits longer. (A full collection per chunk of the screen was
tried and dropped: it walks every container the screen holds, 0.7 s per chunk at 50,000
candidates and growing with them.)
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Youngest generation every 50,000 net container allocations, the middle one every 20 of
#: those, the oldest one every 10 of those (and, as always in CPython, only once the
#: objects waiting for it are a quarter of those it holds).
THRESHOLDS = (50_000, 20, 10)


def collect_rarely() -> tuple[int, int, int]:
    """Collect once, freeze the objects alive then and raise the collector's thresholds;
    return the thresholds in force before. (Collecting first keeps garbage out of the
    frozen set, where it would never be collected.)"""
    gc.collect()
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return before


_lock = threading.Lock()
_depth = 0
_restore: tuple[int, int, int] | None = None


@contextmanager
def rare_collections() -> Iterator[None]:
    """:func:`collect_rarely` inside the block; on exit the thresholds are restored and the
    frozen objects return to the oldest generation.

    Blocks may nest or overlap (flows run in threads of one process): only the outermost
    one tunes the collector, and the last one to end restores it. Objects some other code
    froze before the block are unfrozen with the rest at its end (they are then only
    walked by collections again).
    """
    global _depth, _restore
    with _lock:
        _depth += 1
        if _depth == 1:
            _restore = collect_rarely()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore is not None:
                gc.set_threshold(*_restore)
                gc.unfreeze()
                _restore = None
