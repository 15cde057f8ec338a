"""Dask worker preload: start a featurizer child process as each worker starts, and keep
Prefect from logging tracebacks of matscreen's own errors there; and tune the garbage
collector for a process with a large heap (:mod:`matscreen.flows.heap`).

Its imports (pymatgen, matminer) then run while the driver ingests and splits, instead of
when the first featurization batch arrives. Pass ``--preload matscreen.flows.dask_preload``
to ``dask worker`` to get the same on an existing cluster.
"""

from __future__ import annotations

from typing import Any

from matscreen.flows.heap import collect_rarely
from matscreen.flows.runtime import quiet_own_errors
from matscreen.tasks.featurize.isolated import prewarm


def dask_setup(worker: Any) -> None:
    """Called by Dask in every worker process at start."""
    quiet_own_errors()
    prewarm()
    collect_rarely()  # a worker holds a large heap and unpickles structures by the batch
