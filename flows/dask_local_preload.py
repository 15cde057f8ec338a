"""Preload of the workers of the LocalCluster matscreen starts itself.

As :mod:`matscreen.flows.dask_preload`, and the worker ignores Ctrl-C: the terminal sends
it to the whole process group, and a worker that died of it would fail the tasks the
driver is still recording as interrupted. The driver alone handles Ctrl-C and closes the
cluster. (Workers of a cluster the user started keep their own Ctrl-C.)
"""

from __future__ import annotations

import signal
from typing import Any

from matscreen.flows import dask_preload


def dask_setup(worker: Any) -> None:
    """Called by Dask in every worker process at start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dask_preload.dask_setup(worker)
