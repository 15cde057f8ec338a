"""Featurization speed: matscreen on a Dask LocalCluster against matminer's own
featurize_dataframe, on real structures (CMR perovskites plus Materials Project records).

Usage: ``python benchmarks/featurize.py [--perovskites N] [--repeats R] [--preset fast]``

Prints medians over R runs of: matminer (MultipleFeaturizer.featurize_dataframe, n_jobs=2);
matscreen cold (empty feature store, freshly restarted workers whose featurizer children
are still starting), warm (the same structures again, every row in the store) and started
(empty store, workers and children already up), on 2 and on 1 worker; the ratios; and the
peak memory above idle of the whole process tree (driver, workers, featurizer children).
matscreen is timed inside the flow, as the campaign's step timer times it; the Prefect
flow's own start and end are printed in a column of their own.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import psutil
from distributed import Client
from matminer.featurizers.base import MultipleFeaturizer
from prefect import flow
from pymatgen.core import Structure

from matscreen.catalog.features import FeatureStore
from matscreen.flows.featurize import featurize_records
from matscreen.flows.runtime import dask_task_runner, local_cluster, prefect_api
from matscreen.flows.settings import Settings
from matscreen.tasks.featurize import build_featurizers, featurization_config
from matscreen.tasks.sources import StructureRecord
from matscreen.tasks.sources.csv_cif import parse_cif
from matscreen.tasks.spec import FeaturizationSpec


def load_structures(data_dir: Path, n_perovskites: int) -> list[StructureRecord]:
    """The first N CMR perovskites and every structure of the two MP files."""
    frame = pd.read_csv(data_dir / "perovskites_cmr" / "cubic_perovskites.csv", nrows=n_perovskites)
    structures = [
        (f"cmr:{i}", parse_cif(c, f"row {i}"))
        for i, c in zip(frame.material_id, frame.cif, strict=True)
    ]
    mp = data_dir / "materials_project"
    for n, line in enumerate((mp / "summary_200.jsonl").read_text().splitlines()):
        structures.append((f"mp_summary:{n}", Structure.from_dict(json.loads(line)["structure"])))
    for line in (mp / "mp2018_subset_100.jsonl").read_text().splitlines():
        doc = json.loads(line)
        structures.append((f"mp2018:{doc['id']}", Structure.from_dict(doc["structure"])))
    return [
        StructureRecord("bench", i, n, s.composition.reduced_formula, s.as_dict(), {}, {})
        for n, (i, s) in enumerate(structures, start=1)
    ]


class PeakMemory:
    """Samples the resident memory of this process and all its descendants."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.peak = 0
        self._stop = threading.Event()

    def _total(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            if proc.pid in self.exclude:
                continue
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def __enter__(self) -> PeakMemory:
        self.baseline = self._total()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._total())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def above_idle_mb(self) -> float:
        return max(self.peak - self.baseline, 0) / 2**20


def measured(fn: Callable[[], object], exclude: set[int]) -> tuple[float, float]:
    with PeakMemory(exclude) as memory:
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
    return seconds, memory.above_idle_mb


def run_matminer(records: list[StructureRecord], config: dict, n_jobs: int) -> None:
    """What a matminer user runs: one MultipleFeaturizer per input type, n_jobs workers."""
    frame = pd.DataFrame({"structure": [Structure.from_dict(r.structure) for r in records]})
    frame["composition"] = [s.composition for s in frame["structure"]]
    built = build_featurizers(config)
    for kind in ("composition", "structure"):
        featurizers = [f for k, f in built if k == kind]
        if featurizers:
            multiple = MultipleFeaturizer(featurizers)
            multiple.set_n_jobs(n_jobs)
            multiple.featurize_dataframe(frame[[kind]].copy(), kind, pbar=False, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perovskites", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    records = load_structures(Settings().data_dir, args.perovskites)
    featurization = FeaturizationSpec(preset=args.preset, time_limit_s=120)
    config = featurization_config(featurization)
    print(f"{len(records)} structures, preset {args.preset}, {os.cpu_count()} cores")

    times: dict[str, list[float]] = {}
    memory: dict[str, list[float]] = {}
    overhead: dict[str, list[float]] = {}

    def note(name: str, result: tuple[float, float]) -> None:
        times.setdefault(name, []).append(result[0])
        memory.setdefault(name, []).append(result[1])

    with prefect_api(), tempfile.TemporaryDirectory() as scratch:
        server = {p.pid for p in psutil.Process().children(recursive=True)}
        clusters = {n: local_cluster(n) for n in (1, 2)}
        clients = {n: Client(c, set_as_default=False) for n, c in clusters.items()}

        def matscreen(workers: int, store_dir: Path) -> float:
            """Run featurize_records in a flow; return the seconds it took inside the flow."""

            @flow(
                name="benchmark-featurize",
                task_runner=dask_task_runner(clusters[workers].scheduler_address),
            )
            def bench() -> float:
                start = time.perf_counter()
                featurize_records(
                    records,
                    featurization,
                    FeatureStore(store_dir, config),
                    workers,
                    Settings().featurizer_memory_mb,
                )
                return time.perf_counter() - start

            return bench()

        def step(name: str, run: Callable[[], float]) -> None:
            inside: list[float] = []
            seconds, peak = measured(lambda: inside.append(run()), server)
            note(name, (inside[0], peak))
            overhead.setdefault(name, []).append(seconds - inside[0])

        for repeat in range(args.repeats):
            note("matminer n_jobs=2", measured(lambda: run_matminer(records, config, 2), server))
            for workers in (2, 1):
                clients[workers].restart()  # fresh workers: no featurizer children alive
                plural = "s" if workers > 1 else ""
                cold = Path(scratch) / f"store-{repeat}-{workers}-cold"
                run = functools.partial(matscreen, workers, cold)
                step(f"matscreen cold, {workers} worker{plural}", run)
                if workers == 2:
                    step("matscreen warm, 2 workers", run)
                started = Path(scratch) / f"store-{repeat}-{workers}-started"
                run = functools.partial(matscreen, workers, started)
                step(f"matscreen started, {workers} worker{plural}", run)
            print(f"run {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()))
        for client in clients.values():
            client.close()
        for cluster in clusters.values():
            cluster.close()

    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\n{'':<30}{'median s':>10}{'peak MB':>10}{'flow s':>8}   ({args.repeats} runs, "
        f"{len(records)} structures, {os.cpu_count()} cores)"
    )
    for name, seconds in median.items():
        flow_s = f"{statistics.median(overhead[name]):8.2f}" if name in overhead else ""
        print(f"{name:<30}{seconds:10.2f}{statistics.median(memory[name]):10.0f}{flow_s}")
    print("(flow s: the Prefect flow's own start and end, outside the featurization)")

    def ratio(a: str, b: str) -> float:
        return median[a] / median[b]

    cold2, cold1 = "matscreen cold, 2 workers", "matscreen cold, 1 worker"
    started2, started1 = "matscreen started, 2 workers", "matscreen started, 1 worker"
    print(
        f"cold ratio (matminer / matscreen cold, 2 workers): "
        f"{ratio('matminer n_jobs=2', cold2):.2f}"
    )
    print(
        f"warm ratio (matscreen cold / warm, 2 workers):     "
        f"{ratio(cold2, 'matscreen warm, 2 workers'):.1f}"
    )
    print(f"1 -> 2 workers efficiency, fresh workers:          {ratio(cold1, cold2) / 2:.0%}")
    print(f"1 -> 2 workers efficiency, started workers:        {ratio(started1, started2) / 2:.0%}")


if __name__ == "__main__":
    main()
