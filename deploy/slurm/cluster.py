"""Start a Dask cluster on a SLURM machine for matscreen, and print how to point at it.

Run this on a login node (it hosts the Dask scheduler) and leave it running:

    python deploy/slurm/cluster.py --jobs 8 --cores 32 --memory 120GB --walltime 04:00:00 \
        --partition compute --account myproject

Each SLURM job runs single-threaded Dask workers (featurizers and xgboost fits are CPU-bound
Python), one per core, each with its share of the job's memory as its Dask memory limit, and
each preloading ``matscreen.flows.dask_preload`` so that its featurizer child process starts
with the worker. Then, in the shell that runs matscreen:

    export MATSCREEN_DASK_ADDRESS=tcp://<login node>:8786
    export PREFECT_API_URL=http://<prefect server>:4200/api
    matscreen campaign run deploy/campaigns/perovskite-water-splitting.yaml

Workers must reach the Prefect API (they report task runs to it), so a Prefect server the
compute nodes can reach is needed; see "Scaling out" in the README.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

#: The worker preload that starts a featurizer child process with each worker.
PRELOAD = "matscreen.flows.dask_preload"


def slurm_cluster(
    cores: int,
    memory: str,
    walltime: str,
    partition: str | None = None,
    account: str | None = None,
    scheduler_port: int = 8786,
    local_directory: str = "$TMPDIR",
    job_directives: list[str] | None = None,
    host: str | None = None,
) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` configured for matscreen's workloads.

    Parameters
    ----------
    cores, memory
        Cores and memory of one SLURM job; the job runs ``cores`` single-threaded workers,
        each limited to ``memory / cores``.
    walltime, partition, account
        SLURM job settings.
    scheduler_port
        Port of the scheduler on this node (what ``MATSCREEN_DASK_ADDRESS`` names).
    local_directory
        Workers' spill folder on the compute node.
    job_directives
        Extra ``#SBATCH`` lines (e.g. ``--constraint=cpu``).
    host
        Interface the scheduler listens on (default: this node's hostname).
    """
    from dask_jobqueue import SLURMCluster

    scheduler_options: dict[str, Any] = {"port": scheduler_port, "dashboard_address": ":0"}
    if host is not None:
        scheduler_options["host"] = host
    return SLURMCluster(
        cores=cores,
        processes=cores,
        memory=memory,
        walltime=walltime,
        queue=partition,
        account=account,
        local_directory=local_directory,
        job_extra_directives=list(job_directives or []),
        worker_extra_args=[f"--preload={PRELOAD}"],
        scheduler_options=scheduler_options,
    )


def main(argv: list[str] | None = None) -> None:
    """Start the cluster, ask SLURM for ``--jobs`` jobs, print the address, wait."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs to request")
    parser.add_argument("--cores", type=int, required=True, help="cores per job")
    parser.add_argument("--memory", required=True, help="memory per job, e.g. 120GB")
    parser.add_argument("--walltime", default="04:00:00")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--port", type=int, default=8786)
    parser.add_argument("--print-job-script", action="store_true", help="print it and exit")
    args = parser.parse_args(argv)
    cluster = slurm_cluster(
        args.cores, args.memory, args.walltime, args.partition, args.account, args.port
    )
    if args.print_job_script:
        print(cluster.job_script())
        cluster.close()
        return
    cluster.scale(jobs=args.jobs)
    print(f"export MATSCREEN_DASK_ADDRESS={cluster.scheduler_address}")
    print("(Ctrl-C stops the scheduler and cancels the SLURM jobs)")
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
