"""The SLURM example builds job scripts with matscreen's worker settings (no SLURM needed)."""

from __future__ import annotations

import importlib.util
import re

from matscreen.flows.settings import REPOSITORY_ROOT


def _module():
    path = REPOSITORY_ROOT / "deploy" / "slurm" / "cluster.py"
    spec = importlib.util.spec_from_file_location("slurm_cluster_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_script_runs_single_threaded_preloaded_workers() -> None:
    example = _module()
    cluster = example.slurm_cluster(
        cores=8,
        memory="32GB",
        walltime="02:00:00",
        partition="short",
        account="proj",
        scheduler_port=0,
        host="127.0.0.1",
    )
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p short" in script and "#SBATCH -A proj" in script
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH -t 02:00:00" in script
    assert "--nthreads 1" in script and "--nworkers 8" in script
    assert "--preload=matscreen.flows.dask_preload" in script
    # Each of the 8 workers gets an eighth of the job's 32 GB.
    limit = re.search(r"--memory-limit ([\d.]+)GiB", script)
    assert limit is not None and abs(float(limit.group(1)) - 32e9 / 8 / 2**30) < 0.01
