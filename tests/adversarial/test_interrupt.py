"""Ctrl-C during a campaign: one line, exit status 130, and the run recorded as interrupted.

(SIGTERM is Prefect's: it raises its termination signal wherever the flow is, and where
that is inside pydantic's serializer it arrives wrapped in another error; the run is then
recorded as failed.)"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from matscreen.catalog import Catalog
from matscreen.catalog.queries import find_runs


@pytest.mark.slow
def test_ctrl_c_interrupts_a_campaign_cleanly(settings, subset_spec: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MATSCREEN_HOME": str(settings.home)}
    env.pop("PREFECT_API_URL", None)  # the command serves its own, as a user's would
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "matscreen.flows.cli",
            "campaign",
            "run",
            str(subset_spec),
            "--output",
            str(tmp_path / "out"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # with Ctrl-C's default action, as in a terminal (a test run started in the
        # background of a non-interactive shell inherits SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    catalog_file = settings.home / "catalog.sqlite"
    deadline = time.monotonic() + 300
    started = False
    while time.monotonic() < deadline and process.poll() is None and not started:
        time.sleep(0.5)
        if catalog_file.exists():
            with Catalog(settings.catalog_url) as catalog, catalog.engine.connect() as conn:
                started = bool(
                    conn.execute(
                        text("SELECT count(*) FROM activities WHERE kind = 'step'")
                    ).scalar()
                )
    assert started, "the campaign did not start"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == "matscreen: interrupted"
    # Neither a KeyboardInterrupt traceback (the server and workers do not get the Ctrl-C)
    # nor Prefect failing to reach its server; only Dask may log, while closing, a comm it
    # found closed.
    assert "KeyboardInterrupt" not in err and "ConnectError" not in err, err[-3000:]
    assert "Exception Group Traceback" not in err, err[-3000:]
    assert all(
        final.startswith("distributed.comm.core.CommClosedError")
        for final in _exceptions_ending_tracebacks(err)
    ), err[-3000:]
    with Catalog(settings.catalog_url) as catalog:
        assert [run.status for run in find_runs(catalog)] == ["interrupted"]


def _exceptions_ending_tracebacks(err: str) -> list[str]:
    """The exception line that ends each traceback in ``err``; of a chain (``The above
    exception was the direct cause …``), only the last."""
    lines = err.splitlines()

    def next_unindented(start: int) -> int:
        while start < len(lines) and (not lines[start] or lines[start].startswith(" ")):
            start += 1
        return start

    finals = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            end = next_unindented(i + 1)
            after = next_unindented(end + 1)
            chained = after < len(lines) and lines[after].startswith(
                ("The above exception", "During handling of the above")
            )
            if end < len(lines) and not chained:
                finals.append(lines[end])
    return finals


def test_a_worker_of_the_own_cluster_drops_only_a_closed_heartbeat() -> None:
    from distributed.comm.core import CommClosedError

    from matscreen.flows.dask_local_preload import _WithoutClosedHeartbeat

    def record(error: BaseException) -> logging.LogRecord:
        message = "Failed to communicate with scheduler during heartbeat."
        return logging.LogRecord(
            "distributed.worker",
            logging.ERROR,
            __file__,
            1,
            message,
            None,
            (type(error), error, None),
        )

    kept = _WithoutClosedHeartbeat()
    assert not kept.filter(record(CommClosedError("in <TCP (closed)>: Stream is closed")))
    assert kept.filter(record(OSError("Timed out trying to connect to tcp://127.0.0.1:1")))
