"""Preload of the workers of the LocalCluster matscreen starts itself.

As :mod:`matscreen.flows.dask_preload`, and the worker ignores Ctrl-C: the terminal sends
it to the whole process group, and a worker that died of it would fail the tasks the
driver is still recording as interrupted. The driver alone handles Ctrl-C and closes the
cluster. (Workers of a cluster the user started keep their own Ctrl-C.)

Its scheduler lives in the driver's process, so a heartbeat the worker finds the connection
closed on means the driver is closing the cluster (after Ctrl-C, say) or has died; the
driver, or its exit status, says which. The worker's own report of that, a traceback, is
left off the console (a heartbeat that times out is still reported).
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from matscreen.flows import dask_preload


class _WithoutClosedHeartbeat(logging.Filter):
    """Drop the worker's report that its heartbeat found the scheduler's connection closed."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError

        closed = record.exc_info is not None and isinstance(record.exc_info[1], CommClosedError)
        return not (closed and record.getMessage().startswith("Failed to communicate"))


def dask_setup(worker: Any) -> None:
    """Called by Dask in every worker process at start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_WithoutClosedHeartbeat())
    dask_preload.dask_setup(worker)
