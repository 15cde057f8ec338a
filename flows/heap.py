"""The cyclic garbage collector, tuned for processes that hold a large heap; and the C
allocator's free memory handed back to the system.

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

import ctypes
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:  # no C library loaded by name here (Windows)
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_trim = _malloc_trim()


def return_free_memory() -> None:
    """Hand the C allocator's free pages back to the system (glibc's ``malloc_trim``).

    glibc returns freed memory only from the top of its heap; the pages a chunk's arrays
    and tables freed below a block still in use stay counted in the process's resident
    size. A screen frees such tables after every chunk; at 10^5 candidates the flow's
    process held 250 MiB of them at the end of the stream, and a few ms per chunk hands
    them back. Where the C library has no such call, nothing is done.
    """
    if _trim is not None:
        _trim(0)
