"""Screening at scale: how many candidates a second, in how much memory, against the plain loop.

Usage: ``python benchmarks/screen_scale.py [--sizes 10000,30000] [--plain 20000]
[--scaling 60000] [--skip-campaign] [--resume 100000]``

Candidates are decorations of two prototypes with 66 metals and several anion groups, kept
when charge-neutral: the cubic perovskite ABX3 (built in) and the rock-salt ordered double
perovskite A2BB'X6 (Fm-3m, its 10-atom primitive cell written to a scratch file); beyond
about half a million candidates, the double perovskite with more anion groups as a third
source (``prototype_sources``). Parts:

1. generate: candidates per second of the prototypes source, on one core.
2. plain loop: what a matminer user writes — ``featurize_dataframe`` of every featurizer of
   the demo campaign (n_jobs=2), then the model's ``predict`` — against matscreen's
   featurization (the campaign's ``featurize_records`` in a Prefect flow on 2 Dask workers,
   feature store included) and the same ``predict``, on ``--plain`` candidates; the two
   sets of predictions are compared.
3. scaling: matscreen's featurization of ``--scaling`` candidates on 1 and on 2 workers.
4. end to end: the demo campaign with its CMR training pool and SIZE candidates (see
   ``prototype_sources``) through ``run_campaign``, for each size: wall time, step times,
   candidates per second, peak resident memory of every process (driver, Prefect server,
   Dask workers, featurizer children), and the time of one candidate's lineage query.
5. resume (``--resume SIZE``): the campaign of part 4 run as ``matscreen campaign run``,
   killed once half of its candidates are predicted, then run again: what the second run
   read back (predictions, features) and its time against an uninterrupted run.

Every number printed is measured in this run; ratios compare runs made one after another
on the same machine.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import yaml
from distributed import Client
from featurize import PeakMemory  # benchmarks/featurize.py
from prefect import flow
from pymatgen.core import Lattice, Structure

from matscreen.catalog.features import FeatureStore
from matscreen.flows.featurize import featurize_records
from matscreen.flows.heap import rare_collections
from matscreen.flows.runtime import dask_task_runner, local_cluster, prefect_api
from matscreen.flows.settings import Settings
from matscreen.tasks.featurize import build_featurizers, featurization_config
from matscreen.tasks.sources import StructureRecord
from matscreen.tasks.sources.base import read_source
from matscreen.tasks.spec import FeaturizationSpec, PrototypeSourceSpec

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"

METALS = ["Li", "Be", "Na", "Mg", "Al", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co",
          "Ni", "Cu", "Zn", "Ga", "Ge", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh",
          "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Sm", "Eu",
          "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re", "Os", "Ir",
          "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "B", "Si", "As", "Te"]  # fmt: skip
PEROVSKITE_X = ["O3", "O2N", "ON2", "N3", "O2F", "ONF", "O2S", "F3", "Cl3", "OF2"]
DOUBLE_X = ["O6", "O5N", "O4N2", "O5F", "O4F2", "F6", "O5S", "Cl6"]
#: Anion groups of a third source, read only beyond what the first two hold (10^6 candidates).
MORE_DOUBLE_X = ["O4S2", "O4NF", "O5Cl", "O4Cl2", "O3F3", "O3N2F", "O3NF2", "O2F4"]


def double_perovskite(folder: Path) -> Path:
    """The rock-salt ordered double perovskite A2BB'X6 (Sr2FeMoO6 type) as a CIF: Ba on A,
    Ti on B, Nb on B', O on X; its primitive cell has 10 sites."""
    conventional = Structure.from_spacegroup(
        "Fm-3m",
        Lattice.cubic(8.0),
        ["Ba", "Ti", "Nb", "O"],
        [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0, 0]],
    )
    primitive = conventional.get_primitive_structure()
    path = folder / "double_perovskite.cif"
    primitive.to(filename=str(path))
    return path


def prototype_sources(folder: Path, size: int | None) -> list[dict[str, Any]]:
    """Prototypes sources holding ``size`` candidates together (None: all of them).

    Half of ``size``, at most the 19,070 charge-neutral decorations it holds, comes from
    the perovskite ABX3; the rest from the double perovskite A2BB'X6
    with the anion groups of :data:`DOUBLE_X`, and what these cannot hold (beyond about
    half a million) from the same double perovskite with the groups of
    :data:`MORE_DOUBLE_X`. How many a source holds is counted by enumerating its
    decorations (``iter_candidates``), only as far as needed.
    """
    double = str(double_perovskite(folder))
    specs = [
        {"name": "abx3", "prototype": "perovskite_ABX3",
         "sites": {"A": METALS, "B": METALS, "X": PEROVSKITE_X}},
        {"name": "a2bbx6", "prototype": double,
         "sites": {"Ba": METALS, "Ti": METALS, "Nb": METALS, "O": DOUBLE_X}},
        {"name": "a2bbx6_more", "prototype": double,
         "sites": {"Ba": METALS, "Ti": METALS, "Nb": METALS, "O": MORE_DOUBLE_X}},
    ]  # fmt: skip
    sources = [{**spec, "kind": "prototypes", "pool": "screen"} for spec in specs]
    if size is None:
        return [{**source, "limit": None} for source in sources]
    chosen, remaining = [], size
    for number, source in enumerate(sources):
        wanted = size // 2 if number == 0 else remaining
        if wanted <= 0:
            continue
        chosen.append({**source, "limit": wanted})
        if number < len(sources) - 1:
            remaining -= _holds(source, wanted)
    return chosen


def _holds(source: dict[str, Any], at_most: int) -> int:
    """How many decorations ``source`` holds, counted up to ``at_most``."""
    from itertools import islice

    from matscreen.tasks.sources.prototypes import iter_candidates

    spec = PrototypeSourceSpec.model_validate(source)
    return sum(1 for _ in islice(iter_candidates(spec), at_most))


def generate(folder: Path, n: int) -> tuple[list[StructureRecord], float]:
    """Read ``n`` candidates from the sources; return them and the seconds the reads took
    (not the counting that sizes the sources)."""
    sources = prototype_sources(folder, n)
    start = time.perf_counter()
    records: list[StructureRecord] = []
    for source in sources:
        result = read_source(PrototypeSourceSpec.model_validate(source))
        records += result.records
    return records, time.perf_counter() - start


def demo_featurization() -> FeaturizationSpec:
    """The demo campaign's featurization, its preset chosen as the campaign chooses it."""
    from matscreen.tasks.spec import load_spec

    return load_spec(DEMO_SPEC, Settings().data_dir).featurization


def matminer_plain(records: list[StructureRecord], config: dict[str, Any]) -> pd.DataFrame:
    """Every featurizer's ``featurize_dataframe`` with n_jobs=2, as a matminer user runs it."""
    structures = [Structure.from_dict(r.structure) for r in records]
    frame = pd.DataFrame(
        {"structure": structures, "composition": [s.composition for s in structures]}
    )
    columns = []
    for kind, featurizer in build_featurizers(config):
        featurizer.set_n_jobs(2)
        out = featurizer.featurize_dataframe(frame[[kind]].copy(), kind, pbar=False)
        columns.append(out.drop(columns=[kind]))
    return pd.concat(columns, axis=1).astype(float).set_axis([r.id for r in records])


@flow(name="benchmark-screen-scale")
def _featurize_flow(inputs: str, store: str, workers: int) -> tuple[pd.DataFrame, float]:
    """featurize_records on the records pickled at ``inputs``; features and its seconds.

    The records come from a file: a flow of this script closing over them would be pickled
    with them for every task it submits (a script's functions travel by value)."""
    with rare_collections():  # as in a campaign's flow, whose records come after its start
        records, featurization = pickle.loads(Path(inputs).read_bytes())
        start = time.perf_counter()
        table, _, _ = featurize_records(
            records,
            featurization,
            FeatureStore(Path(store), featurization_config(featurization)),
            workers,
            Settings().featurizer_memory_mb,
        )
        return table.frame, time.perf_counter() - start


def matscreen_features(
    records: list[StructureRecord],
    featurization: FeaturizationSpec,
    address: str,
    store: Path,
    workers: int,
) -> tuple[pd.DataFrame, float]:
    """The campaign's featurization step in a flow on ``address``; features and seconds."""
    inputs = store.with_suffix(".inputs.pickle")
    inputs.parent.mkdir(parents=True, exist_ok=True)
    inputs.write_bytes(pickle.dumps((records, featurization)))
    runner = dask_task_runner(address)
    return _featurize_flow.with_options(task_runner=runner)(str(inputs), str(store), workers)


def fit_model(frame: pd.DataFrame, labels: pd.Series) -> Any:
    from xgboost import XGBRegressor

    model = XGBRegressor(n_estimators=300, max_depth=6, learning_rate=0.05, n_jobs=2, max_bin=64)
    return model.fit(frame.to_numpy(), labels.loc[frame.index].to_numpy())


def compare_with_plain_loop(
    plain: list[StructureRecord],
    config: dict[str, Any],
    featurization: FeaturizationSpec,
    model: Any,
    address: str,
    client: Client,
    scratch: str,
) -> None:
    """Part 2: matminer's loop and matscreen's flow on the same candidates, same model."""
    start = time.perf_counter()
    reference = matminer_plain(plain, config)
    plain_predictions = model.predict(reference.to_numpy())
    plain_s = time.perf_counter() - start

    client.restart()
    start = time.perf_counter()
    features, inside = matscreen_features(plain, featurization, address, Path(scratch) / "p", 2)
    ours = model.predict(features.loc[reference.index].to_numpy())
    ours_s = time.perf_counter() - start
    same_features = np.allclose(
        features.loc[reference.index].to_numpy(),
        reference.to_numpy(),
        rtol=1e-9,
        atol=0,
        equal_nan=True,
    )
    print(f"\n2. plain loop against matscreen, {len(plain)} candidates, 2 cores")
    print(f"   matminer featurize_dataframe (n_jobs=2) + predict: {plain_s:8.1f} s "
          f"{len(plain) / plain_s:10,.0f}/s")  # fmt: skip
    print(f"   matscreen flow on 2 workers + predict:            {ours_s:8.1f} s "
          f"{len(plain) / ours_s:10,.0f}/s   (inside the flow {inside:.1f} s)")  # fmt: skip
    largest = np.max(np.abs(ours - plain_predictions))
    print(f"   ratio {plain_s / ours_s:.1f}x; features equal at rtol 1e-9: {same_features}; "
          f"largest prediction difference {largest:.2e} eV")  # fmt: skip


def part_plain_and_scaling(args: argparse.Namespace, folder: Path) -> None:
    featurization = demo_featurization()
    config = featurization_config(featurization)
    records, seconds = generate(folder, max(args.plain, args.scaling))
    print(f"\n1. generate: {len(records)} candidates in {seconds:.1f} s "
          f"({len(records) / seconds:,.0f}/s, one core)")  # fmt: skip

    cmr = read_source(_cmr_source()).records
    labelled = [r for r in cmr if r.properties.get("heat_of_formation") is not None]
    with prefect_api(), tempfile.TemporaryDirectory() as scratch:
        clusters = {n: local_cluster(n) for n in (2, 1)}
        clients = {n: Client(c, set_as_default=False) for n, c in clusters.items()}
        address = {n: c.scheduler_address for n, c in clusters.items()}
        train, _ = matscreen_features(labelled, featurization, address[2], Path(scratch) / "cmr", 2)
        heats = pd.Series({r.id: r.properties["heat_of_formation"] for r in labelled})
        model = fit_model(train, heats)

        plain = records[: args.plain]
        if plain:
            compare_with_plain_loop(
                plain, config, featurization, model, address[2], clients[2], scratch
            )
        else:
            print("\n2. plain loop: skipped (--plain 0)")

        scaled = records[: args.scaling]
        timing = {}
        for workers in (1, 2):
            clients[workers].restart()
            _, timing[workers] = matscreen_features(
                scaled, featurization, address[workers], Path(scratch) / f"s{workers}", workers
            )
        print(f"\n3. scaling: {len(scaled)} candidates, featurization inside the flow")
        for workers, seconds in timing.items():
            print(f"   {workers} worker{'s' if workers > 1 else ' '}: {seconds:7.1f} s "
                  f"{len(scaled) / seconds:10,.0f}/s")  # fmt: skip
        print(f"   1 -> 2 workers efficiency: {timing[1] / timing[2] / 2:.0%}")
        for client in clients.values():
            client.close()
        for cluster in clusters.values():
            cluster.close()


def _cmr_source() -> Any:
    from matscreen.tasks.spec import load_spec

    spec = load_spec(DEMO_SPEC, Settings().data_dir)
    return next(s for s in spec.sources if s.pool == "train")


def campaign_spec(folder: Path, size: int) -> dict[str, Any]:
    """The demo campaign with its CMR training pool and ``size`` decorated candidates."""
    text = DEMO_SPEC.read_text().replace("${data_dir}", str(Settings().data_dir))
    base = yaml.safe_load(text)
    train = [s for s in base["sources"] if s.get("pool", "train") != "screen"]
    return {**base, "name": f"scale-{size}", "sources": train + prototype_sources(folder, size)}


def part_campaign(sizes: list[int], folder: Path) -> None:
    from matscreen import run_campaign
    from matscreen.catalog.artifacts import ArtifactStore
    from matscreen.catalog.lineage import lineage
    from matscreen.catalog.store import Catalog

    training_records = len(read_source(_cmr_source()).records)
    print("\n4. end to end (the demo campaign's training pool; SIZE candidates)")
    print(f"   {'candidates':>10} {'ranked':>8} {'wall s':>8} {'cand/s':>8} "
          f"{'peak RSS GiB':>12} {'lineage s':>9}  steps (s)")  # fmt: skip
    for size in sizes:
        spec = campaign_spec(folder, size)
        with tempfile.TemporaryDirectory() as home:
            os.environ["MATSCREEN_HOME"] = home
            with PeakMemory(exclude=set()) as memory:
                start = time.perf_counter()
                result = run_campaign(spec, Path(home) / "out")
                wall = time.perf_counter() - start
            settings = Settings()
            ranking = result.ranking
            candidate = str(ranking["id"].iloc[len(ranking) // 2])
            with Catalog(settings.catalog_url) as catalog:
                started = time.perf_counter()
                lineage(catalog, ArtifactStore(settings.artifact_dir), candidate, result.run_id)
                lineage_s = time.perf_counter() - started
        steps = ", ".join(f"{k} {v:.0f}" for k, v in result.seconds.items() if k != "total")
        counts = result.metrics["counts"]
        read = counts["records"] - training_records
        print(f"   {read:>10} {len(ranking):>8} {wall:8.0f} {read / wall:8.0f} "
              f"{memory.peak / 2**30:12.2f} {lineage_s:9.2f}  {steps}")  # fmt: skip


def _predicted(settings: Settings, models: int) -> int:
    """Candidates predicted by every one of the ``models`` models so far (rows of the
    stored prediction sets of candidates, for the model with the fewest)."""
    from matscreen.catalog.store import Catalog

    if not (settings.home / "catalog.sqlite").exists():
        return 0
    with Catalog(settings.catalog_url) as catalog:
        sets = [e.attributes for e in catalog.find_entities("prediction_set")]
    rows: dict[str, int] = {}
    for attributes in sets:
        if "scalars" in attributes:  # predictions of candidates, not held-out ones
            target = attributes["target"]
            rows[target] = rows.get(target, 0) + attributes["n_rows"]
    return min(rows.values()) if len(rows) == models else 0


def _featurize_steps(settings: Settings, run_id: str | None = None) -> list[Any]:
    from matscreen.catalog.store import Catalog

    with Catalog(settings.catalog_url) as catalog:
        steps = [a for a in catalog.activities(kind="step") if a.name == "featurize"]
    return [a for a in steps if run_id is None or a.parent_id == run_id]


def part_resume(size: int, folder: Path, fraction: float = 0.5) -> None:
    """A campaign killed once ``fraction`` of its candidates are predicted, then run again;
    and the same campaign uninterrupted, for comparison."""
    import subprocess
    import sys

    from matscreen import run_campaign

    spec = campaign_spec(folder, size)
    command = [str(Path(sys.executable).parent / "matscreen"), "campaign", "run"]
    print(f"\n5. resume: {size} candidates, killed when {fraction:.0%} are predicted")
    with tempfile.TemporaryDirectory() as home:
        os.environ["MATSCREEN_HOME"] = home
        settings = Settings()
        path = Path(home) / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        start = time.perf_counter()
        child = subprocess.Popen(
            [*command, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while (done := _predicted(settings, len(spec["models"]))) < fraction * size:
                if child.poll() is not None:
                    raise SystemExit(f"the campaign ended (code {child.returncode}) unkilled")
                time.sleep(2)
        finally:
            try:
                tree = [child, *psutil.Process(child.pid).children(recursive=True)]
            except psutil.NoSuchProcess:  # ended by itself (reported above)
                tree = []
            for process in tree:
                process.kill()
            psutil.wait_procs(tree, timeout=60)
        killed_at = time.perf_counter() - start
        featurized = sum(a.parameters.get("batches", 0) > 0 for a in _featurize_steps(settings))
        kept = len(list(settings.screen_state_dir.glob("*/*/*.json")))
        start = time.perf_counter()
        resumed = run_campaign(spec, Path(home) / "out")
        resume_s = time.perf_counter() - start
        featurize_steps = _featurize_steps(settings, resumed.run_id)
        from_store = sum(a.parameters["structures_from_store"] for a in featurize_steps)
        computed = sum(a.parameters["batches"] > 0 for a in featurize_steps)
    with tempfile.TemporaryDirectory() as home:
        os.environ["MATSCREEN_HOME"] = home
        start = time.perf_counter()
        whole = run_campaign(spec, Path(home) / "out")
        whole_s = time.perf_counter() - start
    reused = resumed.metrics["counts"]["predictions_reused"]
    taken = resumed.metrics["counts"]["records_resumed"]
    share = taken / size  # the chunks finished (kept); those predicted after are redone
    columns = [c for c in whole.ranking.columns if c in resumed.ranking.columns]
    same = (
        whole.ranking[columns]
        .reset_index(drop=True)
        .equals(resumed.ranking[columns].reset_index(drop=True))
    )
    print(f"   killed after {killed_at:.0f} s: {done} candidates predicted, "
          f"{featurized} featurize steps had computed, {kept} chunks finished")  # fmt: skip
    print(f"   resumed run: {resume_s:.0f} s; {taken} records taken whole from the finished "
          f"chunks; predictions read back for {reused} more candidates, {from_store} "
          f"structures' features from the store, {computed} featurize steps computed "
          "anew")  # fmt: skip
    print(f"   uninterrupted run: {whole_s:.0f} s; the resumed run took {resume_s / whole_s:.0%}"
          f" of it, with {1 - share:.0%} of the candidates in chunks not finished; "
          f"same ranking: {same}")  # fmt: skip
    for name, run in (("resumed", resumed), ("uninterrupted", whole)):
        steps = ", ".join(f"{k} {v:.0f}" for k, v in run.seconds.items())
        print(f"   steps of the {name} run (s): {steps}")
    redone = (resume_s - whole_s * (1 - share)) / (whole_s * share)
    print(f"   time spent again on the finished part, estimated: {redone:.1%} of what it took "
          "((resumed - uninterrupted x unfinished share) / (uninterrupted x finished share);"
          " the fixed costs, training and start-up, are counted in it)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000", help="end-to-end candidate counts")
    parser.add_argument("--plain", type=int, default=20000, help="candidates for the plain loop")
    parser.add_argument("--scaling", type=int, default=60000, help="candidates for 1 vs 2 workers")
    parser.add_argument("--skip-campaign", action="store_true")
    parser.add_argument("--resume", type=int, default=0, help="candidates for the resume part")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if args.plain or args.scaling:
            part_plain_and_scaling(args, folder)
        else:
            records, seconds = generate(folder, 20000)
            rate = len(records) / seconds
            print(f"\n1. generate: {len(records)} candidates in {seconds:.1f} s "
                  f"({rate:,.0f}/s, one core); parts 2 and 3 skipped")  # fmt: skip
        if not args.skip_campaign:
            part_campaign([int(s) for s in args.sizes.split(",")], folder)
        if args.resume:
            part_resume(args.resume, folder)


if __name__ == "__main__":
    main()
