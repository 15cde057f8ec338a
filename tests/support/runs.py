"""Runs recorded as ``running`` by a process of this host, alive or dead."""

from __future__ import annotations

import multiprocessing
import os
import socket

from matscreen.catalog.nodes import Activity
from matscreen.tasks.runinfo import utc_now


def dead_pid() -> int:
    """The id of a process of this host that has ended."""
    process = multiprocessing.get_context("spawn").Process(target=int)
    process.start()
    process.join()
    return int(process.pid)


def running_run(run_id: str, pid: int | None = None, host: str | None = None) -> Activity:
    """A campaign run's activity as recorded when it starts (default: by this process)."""
    return Activity(
        id=run_id,
        kind="flow_run",
        name="screen-candidates",
        started_at=utc_now(),
        parameters={"host_pid": pid if pid is not None else os.getpid()},
        host=host or socket.gethostname(),
    )
