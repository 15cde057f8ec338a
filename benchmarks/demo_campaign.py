"""Step times of the demo campaign, repeated on fresh catalogs; prints medians.

Usage: ``python benchmarks/demo_campaign.py [--repeats N] [SPEC]``

Each repetition runs the whole flow (ingest, split, featurize on Dask, train, rank, report)
against a new, empty MATSCREEN_HOME, so nothing is reused between repetitions; the Prefect
API and the Dask LocalCluster are started once and their start-up time is printed apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from matscreen.flows.campaign import screen_candidates
from matscreen.flows.cli import DEFAULT_SPEC
from matscreen.flows.runtime import dask_scheduler, dask_task_runner, prefect_api
from matscreen.flows.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    runs: list[dict[str, float]] = []
    metrics: list[dict] = []
    started = time.perf_counter()
    with prefect_api(), dask_scheduler(Settings()) as address:
        startup = time.perf_counter() - started
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as home:
                os.environ["MATSCREEN_HOME"] = home
                t0 = time.perf_counter()
                result = screen_candidates.with_options(task_runner=dask_task_runner(address))(
                    spec_path=str(Path(args.spec).resolve()), output_dir=str(Path(home) / "out")
                )
                steps = dict(result["step_seconds"])
                steps["flow total"] = time.perf_counter() - t0
                runs.append(steps)
                metrics.append(result["metrics"]["targets"])

    print(f"\nmachine: {os.cpu_count()} cores; Dask workers: {Settings().worker_count}")
    print(f"start Prefect API + Dask LocalCluster: {startup:.1f} s (once)")
    print(f"{'step':<14}{'median s':>10}{'min s':>8}{'max s':>8}   over {len(runs)} runs")
    for step in runs[0]:
        values = [run[step] for run in runs]
        print(f"{step:<14}{statistics.median(values):10.2f}{min(values):8.2f}{max(values):8.2f}")
    print("held-out MAE per run (identical runs must agree):")
    for target in metrics[0]:
        print(
            f"  {target}: {[round(m[target]['mae'], 4) for m in metrics]} "
            f"(dummy {metrics[0][target]['dummy_mae']:.4f})"
        )


if __name__ == "__main__":
    main()
