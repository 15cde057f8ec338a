"""The run-time around a flow: Prefect API, Dask cluster, software versions, git commit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.errors import MatscreenError
from matscreen.tasks.versions import installed_version

#: Packages whose versions every activity records.
RECORDED_PACKAGES = (
    "matscreen",
    "prefect",
    "prefect-dask",
    "dask",
    "distributed",
    "pymatgen",
    "matminer",
    "scikit-learn",
    "xgboost",
    "pandas",
    "numpy",
    "pyarrow",
    "sqlalchemy",
)

if TYPE_CHECKING:
    from matscreen.catalog.recorder import CampaignRecorder

R = TypeVar("R", bound="CampaignRecorder")


def software_versions() -> dict[str, str]:
    """Return the installed versions of the packages a run's results depend on."""
    found = {package: installed_version(package) for package in RECORDED_PACKAGES}
    return {package: found for package, found in found.items() if found != "missing"}


def git_commit() -> str | None:
    """Return the commit of the matscreen checkout, or None when it is not a git checkout."""
    try:
        result = subprocess.run(
            ["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and len(commit) == 40 else None


def run_recorder(
    catalog: Any, settings: Settings, name: str, parameters: dict[str, Any], kind: type[R]
) -> R:
    """The recorder of the running flow: its Prefect flow run id as the run's id, the
    settings' artifact store, the installed software, the checkout's commit, the user and
    the host.

    Parameters
    ----------
    catalog
        The open catalog to write into.
    name, parameters
        The flow's name and its parameters (never secrets).
    kind
        :class:`~matscreen.catalog.recorder.CampaignRecorder` or a subclass.
    """
    import getpass
    import socket

    from prefect.runtime import flow_run

    from matscreen.catalog import ArtifactStore

    return kind(
        catalog,
        ArtifactStore(settings.artifact_dir),
        str(flow_run.id),
        name,
        parameters,
        software_versions(),
        git_commit(),
        getpass.getuser(),
        socket.gethostname(),
    )


@contextmanager
def _deaf_to_ctrl_c() -> Iterator[None]:
    """Start the local Prefect server in this block so that the terminal's Ctrl-C does not
    reach it.

    Ctrl-C signals the whole foreground process group: the server would die at once, and
    the driver, recording the interrupted run, would find it gone. With SIGINT blocked
    while it starts (a process inherits the mask), the driver alone gets it, ends the run
    and stops the server. (The LocalCluster's workers ignore SIGINT through their preload,
    :mod:`matscreen.flows.dask_local_preload`.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def prefect_api() -> Iterator[str]:
    """Use the configured Prefect API, or serve a local one while the block runs.

    Without ``PREFECT_API_URL``, Prefect would start a temporary server in every process
    that runs a task, Dask workers included. This starts one on loopback and hands its
    address to the driver and, through the environment, to worker processes started later.
    """
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = SubprocessASGIServer()
    with _deaf_to_ctrl_c():
        server.start()
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
    finally:
        _flush_prefect_logs()
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        server.stop()


def interruptions() -> tuple[type[BaseException], ...]:
    """What ends a run as ``interrupted`` rather than ``failed``: Ctrl-C, and the
    termination signal (SIGTERM) Prefect raises in a flow."""
    from prefect.exceptions import TerminationSignal

    return (KeyboardInterrupt, TerminationSignal)


class _NeverRaised(Exception):
    """Stands for Prefect's termination signal where Prefect is not imported."""


def termination_signal() -> type[BaseException]:
    """Prefect's termination signal, if Prefect is imported (without importing it)."""
    module = sys.modules.get("prefect.exceptions")
    return getattr(module, "TerminationSignal", _NeverRaised)


#: Prefect's loggers of flow and task runs, which log a failed run's exception with its
#: traceback.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _WithoutTracebackOfOwnErrors(logging.Filter):
    """Drop the traceback from a record about a :class:`MatscreenError`: its message names
    what is at fault already, and the command ends with that message as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, MatscreenError):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_own_errors() -> None:
    """Keep Prefect from printing a traceback before a matscreen error's one line (in this
    process; Dask workers call it from their preload)."""
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _WithoutTracebackOfOwnErrors) for f in logger.filters):
            logger.addFilter(_WithoutTracebackOfOwnErrors())


class _OnlyWarnings(logging.Filter):
    """Drop the INFO and DEBUG lines of Prefect's loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        internal = record.name == "prefect" or record.name.startswith("prefect.")
        return record.levelno >= logging.WARNING or not internal


def quiet_console() -> None:
    """Keep Prefect's and Dask's routine lines (a task run finished, a server started, a
    worker closed, a large task graph sent) off the console: their loggers log from WARNING up
    (``PREFECT_LOGGING_LEVEL`` and ``DASK_LOGGING__DISTRIBUTED``, unless set), in this
    process and in the Dask workers started after, which inherit the settings. Where
    Prefect is imported already (its settings read), its INFO lines are filtered from the
    console instead; where Dask is, its logger is set to WARNING.
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    # Dask's hint to its own users that a task carries its data (a batch of structures,
    # a training matrix): by design here, and nothing a matscreen user can act on.
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    if "distributed" in sys.modules and os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning":
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if "prefect" not in sys.modules:
        return
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's handlers, kept by its later (incremental) set-ups
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OnlyWarnings) for f in handler.filters):
            handler.addFilter(_OnlyWarnings())


def _flush_prefect_logs() -> None:
    """Send the log lines Prefect still holds to the API before that API goes away."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)


def dask_task_runner(address: str) -> Any:
    """Prefect's Dask task runner on the scheduler at ``address`` (see
    :class:`matscreen.flows.dask_runner.FreshKeyDaskTaskRunner`)."""
    from matscreen.flows.dask_runner import FreshKeyDaskTaskRunner

    return FreshKeyDaskTaskRunner(address=address)


def local_cluster(workers: int, memory_limit: str = "auto") -> Any:
    """A Dask LocalCluster as matscreen runs it: one single-threaded worker process per
    core (featurizers and xgboost fits are CPU-bound Python), loopback only, and each
    worker starting a featurizer child process ahead of need."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=memory_limit,
        dashboard_address=":0",
        host="127.0.0.1",
        preload=["matscreen.flows.dask_local_preload"],
    )


@contextmanager
def dask_scheduler(settings: Settings) -> Iterator[str]:
    """Yield the address of the Dask scheduler to use, starting a LocalCluster if none is set.

    The LocalCluster (see :func:`local_cluster`) is closed when the block ends.
    """
    if settings.dask_address:
        yield settings.dask_address
        return
    with local_cluster(settings.worker_count, settings.dask_memory_limit) as cluster:
        yield cluster.scheduler_address
