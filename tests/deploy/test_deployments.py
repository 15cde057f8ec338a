"""Deployments on a real Prefect server and process worker: deploy, run, re-run, kill, resume.

The test starts a Prefect server (SQLite, loopback) and a process worker as separate
processes, registers deploy/prefect.yaml with ``matscreen deploy``, and triggers the demo
campaign deployment on a subset of the real perovskites:

1. the first run completes and writes its outputs and catalog records;
2. a second run of the same spec recomputes no features (all come from the store) and
   arrives at the same ranking;
3. a run on a larger subset is killed (its process group, Dask workers included) once a few
   featurization batches are stored; the next run resumes from those batches and computes
   only what is missing.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import SUBSET_SPEC, write_subset

from matscreen.catalog import Catalog
from matscreen.flows.settings import REPOSITORY_ROOT

BIN = Path(sys.executable).parent
POOL = "matscreen-process"
DEPLOYMENT = "campaign/perovskite-water-splitting"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[dict]:
    """A Prefect server and a process worker, with matscreen settings in their environment."""
    folder = tmp_path_factory.mktemp("deployments")
    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MATSCREEN_", "MP_API_KEY"))
    }
    env.update(
        PREFECT_HOME=str(folder / "prefect"),
        PREFECT_API_URL=url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",
        MATSCREEN_HOME=str(folder / "home"),
        MATSCREEN_DATA_DIR=str(data_dir),
        MATSCREEN_DASK_WORKERS="2",
    )
    port = url.split(":")[2].split("/")[0]
    logs = {name: open(folder / f"{name}.log", "w") for name in ("server", "worker")}  # noqa: SIM115
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=logs["server"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = None
    try:
        _wait_healthy(url, server)
        worker = subprocess.Popen(
            [BIN / "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
            env=env,
            cwd=folder,
            stdout=logs["worker"],
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield {"url": url, "env": env, "folder": folder, "home": folder / "home"}
    finally:
        for process in (worker, server):
            if process is not None:
                _stop(process)
        for handle in logs.values():
            handle.close()


def _stop(process: subprocess.Popen, grace_s: float = 60) -> None:
    """Stop a process group: SIGTERM, then SIGKILL if it has not exited after ``grace_s``.

    A Prefect worker asked to stop waits for the flow runs it started; when one of them
    hangs on a dying Dask cluster, the worker would not exit on its own.
    """
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the Prefect server exited at start")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the Prefect server at {url} did not start")


@contextmanager
def _client(stack: dict) -> Iterator[Any]:
    """A Prefect client of the test's server (not of any server this process knows)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack["url"]}), get_client(sync_client=True) as c:
        yield c


def _trigger(stack: dict, spec: Path, out: Path) -> str:
    with _client(stack) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"spec": str(spec), "output_dir": str(out)}
        )
    return str(run.id)


def _state(stack: dict, flow_run_id: str) -> str:
    with _client(stack) as client:
        return client.read_flow_run(flow_run_id).state.type.value


def _wait_for(stack: dict, flow_run_id: str, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = _state(stack, flow_run_id)
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return state
        time.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} still {state} after {timeout_s} s")


def _spec(folder: Path, perovskite_csv: Path, n_rows: int, batch_size: int) -> Path:
    subset = write_subset(perovskite_csv, folder / f"perovskites_{n_rows}.csv", n_rows)
    text = SUBSET_SPEC.format(path=subset).replace("batch_size: 40", f"batch_size: {batch_size}")
    spec = folder / f"subset_{n_rows}.yaml"
    spec.write_text(text)
    return spec


def _featurize_step(catalog: Catalog, run_id: str):
    return next(a for a in catalog.activities(parent_id=run_id) if a.name == "featurize")


def _campaign_run(catalog: Catalog) -> str:
    """The latest screen-candidates run (the subflow of a deployment's flow run)."""
    runs = [a for a in catalog.activities(kind="flow_run") if a.name == "screen-candidates"]
    return runs[-1].id


def _flow_run_processes(flow_run_id: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PREFECT__FLOW_RUN_ID") == flow_run_id:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _parts(home: Path) -> int:
    return len(list((home / "features").glob("*/part-*.parquet")))


@pytest.mark.slow
def test_deploy_run_rerun_kill_resume(stack: dict, perovskite_csv: Path) -> None:
    deployed = subprocess.run(
        [BIN / "matscreen", "deploy"],
        env=stack["env"],
        cwd=REPOSITORY_ROOT,
        capture_output=True,
        text=True,
    )
    assert deployed.returncode == 0, deployed.stderr
    for name in ("perovskite-water-splitting", "mp-oqmd-oxide-gaps-weekly"):
        assert f"deployed {name} (" in deployed.stdout

    folder, home = stack["folder"], stack["home"]
    catalog_url = f"sqlite:///{home / 'catalog.sqlite'}"
    small = _spec(folder, perovskite_csv, 150, batch_size=25)

    # 1. A first run: everything computed, outputs and catalog written.
    first = _trigger(stack, small, folder / "out1")
    assert _wait_for(stack, first) == "COMPLETED"
    assert {p.name for p in (folder / "out1").iterdir()} >= {"ranking.csv", "report.html"}
    with Catalog(catalog_url) as catalog:
        run1 = _campaign_run(catalog)
        step1 = _featurize_step(catalog, run1)
        assert step1.parameters["batches"] == 6 and step1.parameters["structures_from_store"] == 0
        ranking1 = catalog.run_entities(run1, ["ranking"])[0].id

    # 2. The same spec again: no feature is recomputed, the ranking is the same.
    second = _trigger(stack, small, folder / "out2")
    assert _wait_for(stack, second) == "COMPLETED"
    with Catalog(catalog_url) as catalog:
        run2 = _campaign_run(catalog)
        step2 = _featurize_step(catalog, run2)
        assert step2.parameters["batches"] == 0
        assert step2.parameters["structures_from_store"] == 150
        assert catalog.run_entities(run2, ["ranking"])[0].id == ranking1
        # Nor is any model fitted again: the training sets are unchanged.
        fits = [a for a in catalog.activities(parent_id=run2) if "reused_model" in a.parameters]
        assert len(fits) == 2 and all(a.parameters["reused_model"] for a in fits)
    changes = json.loads((folder / "out2" / "metrics.json").read_text())["changes"]
    assert changes["previous_run"] == run1 and changes["moved"] == 0

    # 3. A larger subset, killed once a few batches are stored, then run again.
    large = _spec(folder, perovskite_csv, 700, batch_size=10)
    before = _parts(home)
    killed = _trigger(stack, large, folder / "out3")
    deadline = time.monotonic() + 600
    while _parts(home) < before + 3:
        assert time.monotonic() < deadline, "no featurization batch was stored"
        assert _state(stack, killed) not in ("COMPLETED", "FAILED", "CRASHED")
        time.sleep(0.5)
    # The flow run's process and everything it started (Dask scheduler, workers and their
    # featurizer children) carry its id in their environment.
    processes = _flow_run_processes(killed)
    assert processes, "the flow run's process was not found"
    for process in processes:
        process.kill()
    psutil.wait_procs(processes, timeout=30)
    stored_before_kill = _parts(home) - before

    resumed = _trigger(stack, large, folder / "out4")
    assert _wait_for(stack, resumed) == "COMPLETED"
    with Catalog(catalog_url) as catalog:
        run4 = _campaign_run(catalog)
        step4 = _featurize_step(catalog, run4)
    # The 150 structures of the first runs and the batches the killed run stored (10 each)
    # come from the store; only the rest is computed.
    reused = step4.parameters["structures_from_store"]
    assert reused >= 150 + 10 * stored_before_kill
    assert step4.parameters["batches"] == math.ceil((700 - reused) / 10)
    assert (folder / "out4" / "ranking.csv").is_file()
