"""Accuracy of the surrogates on the CMR cubic perovskites, on a fixed held-out split.

Usage::

    python benchmarks/accuracy.py [--featurization demo|fast|structure]
        [--search none|random|halving] [--iterations N] [--workers 2]
        [--width adaptive|constant] [--out results.json]

Reads the 3,785 perovskites as the demo campaign does (heat of formation ``heat_ref``; band
gap the larger of ``dir_gap`` and ``ind_gap``), holds out the demo's split (random, 20 %,
seed 20121) before anything is fitted, featurizes through the feature store
(``$MATSCREEN_HOME/features``: a second run computes nothing) on a Dask LocalCluster, and
for each model prints the held-out MAE, RMSE and R², the coverage and mean width of its
90 % conformal intervals (overall and per quintile of interval width), and its
cross-validated MAE on the training part, next to the dummy (mean) and Magpie +
random-forest baselines fitted on the same training rows. Two-stage gap models add the
coverage on the rows with a gap and on the rows predicted to have one, the coverage and
mean width of the conditional gap interval (rows with a gap) and the mean probability of
a gap on rows with and without one. ``--width`` chooses the intervals' widths (the
models' ``interval_width``: ``adaptive`` per row, or ``constant``).

When the demo's two models are measured (heat with the demo parameters, two-stage gap with
the decision by CV), the held-out rows are also ranked by the probability of meeting the
demo's criteria, the band gap once through its hurdle distribution (the campaign's
default) and once through its displayed interval alone (as before the hurdle form): the
true hits among the held-out rows, how many of them the top 20 and top 50 hold, and the
mean probability of success of hits and of the other rows.

Models: heat of formation with the demo's xgboost parameters, and tuned by a
hyperparameter search (cross-validation on the training part only); band gap as one
regressor (the demo's), as the two-stage metal / non-metal model, and the two-stage model
tuned. The held-out rows are touched once, to score the finished models.

Featurizations: ``demo`` is the demo spec's (the ``fast`` preset plus all 22 Magpie
properties resolved by site); ``demo+lpd`` adds Ward et al.'s local property differences
(Voronoi neighbours; about 0.7 s a structure); ``demo+fractions`` adds the element
fractions; ``structure`` is the structure preset (adds CrystalNN fingerprints, structural
heterogeneity, ordering and packing; about ten times slower to compute than ``demo``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

# A loaded machine can take longer than Prefect's default 20 s to start its local API.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from matscreen.flows.settings import REPOSITORY_ROOT, Settings
from matscreen.tasks.dataset import candidate_arrays, labels_of, training_arrays
from matscreen.tasks.models.evaluation import evaluate, held_out_record
from matscreen.tasks.models.surrogate import train_surrogate
from matscreen.tasks.spec import FeaturizationSpec, ModelSpec, load_spec
from matscreen.tasks.split import choose_split

DEMO_SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"
DEMO_PARAMS = {"n_estimators": 800, "learning_rate": 0.05, "max_depth": 6, "colsample_bytree": 0.5}


def featurize(records: list[Any], featurization: FeaturizationSpec, workers: int) -> Any:
    """The feature table of every record, from the store where it has them."""
    from prefect import flow

    from matscreen.catalog.features import FeatureStore
    from matscreen.flows.featurize import featurize_records
    from matscreen.flows.runtime import dask_task_runner, local_cluster, prefect_api
    from matscreen.tasks.featurize import featurization_config

    settings = Settings()
    store = FeatureStore(settings.feature_dir, featurization_config(featurization))
    with prefect_api(), local_cluster(workers) as cluster:

        @flow(name="benchmark-featurize", task_runner=dask_task_runner(cluster.scheduler_address))
        def run() -> tuple[Any, int]:
            table, _, reused = featurize_records(records, featurization, store, workers)
            return table, reused

        return run()


#: Ward et al.'s (PRB 2017) local property differences: for each site, how its elemental
#: properties differ from its neighbours' (Voronoi-weighted), summarized over the sites.
LOCAL_DIFFERENCES = {
    "input": "structure",
    "cls": "matminer.featurizers.structure.SiteStatsFingerprint",
    "from_preset": "LocalPropertyDifference_ward-prb-2017",
}


#: The fraction of each element in the composition: which elements are present, exactly.
ELEMENT_FRACTIONS = {
    "input": "composition",
    "cls": "matminer.featurizers.composition.ElementFraction",
}

#: Featurizers added to the demo's by the ``demo+…`` featurizations.
EXTRA_FEATURIZERS = {"demo+lpd": [LOCAL_DIFFERENCES], "demo+fractions": [ELEMENT_FRACTIONS]}


def featurization_for(name: str, demo: FeaturizationSpec) -> FeaturizationSpec:
    """The featurization a ``--featurization`` name stands for."""
    if name == "demo":
        return demo
    described = demo.model_dump()
    if name in EXTRA_FEATURIZERS:
        described["featurizers"] = [*described["featurizers"], *EXTRA_FEATURIZERS[name]]
        return FeaturizationSpec.model_validate(described)
    return FeaturizationSpec(preset=name, time_limit_s=demo.time_limit_s)


def models(search: str, iterations: int, width: str = "adaptive") -> list[tuple[str, ModelSpec]]:
    """The models measured: (label, spec)."""
    heat = {"target": "heat_of_formation", "params": DEMO_PARAMS, "interval_width": width}
    gap = {"target": "band_gap", "clip_min": 0.0, "params": DEMO_PARAMS, "interval_width": width}
    two_stage = {**gap, "kind": "two_stage_gap"}
    tuned = {"search": search, "search_iterations": iterations}
    chosen = [
        ("heat: xgboost, demo parameters", ModelSpec(**heat)),
        ("gap: one regressor, demo parameters", ModelSpec(**gap)),
        ("gap: two-stage, decision 0.5", ModelSpec(**two_stage, gap_decision=0.5)),
        ("gap: two-stage, decision by CV", ModelSpec(**two_stage)),
    ]
    if search != "none":
        chosen += [
            ("heat: xgboost, tuned", ModelSpec(**heat, **tuned)),
            ("gap: two-stage, tuned, decision by CV", ModelSpec(**two_stage, **tuned)),
        ]
    return chosen


#: The models whose held-out records are ranked together (the demo campaign's two).
SCREENED = {
    "heat_of_formation": "heat: xgboost, demo parameters",
    "band_gap": "gap: two-stage, decision by CV",
}


def screening_lines(records: dict[str, Any], criteria: list[Any]) -> list[str]:
    """Rank the held-out rows by P(success), with the gap's hurdle form and without."""
    import pandas as pd

    from matscreen.tasks.rank import add_intervals, candidate_frame
    from matscreen.tasks.rank.methods import rank_with
    from matscreen.tasks.rank.probability import hurdle_columns
    from matscreen.tasks.spec import RankingSpec

    ids = records["heat_of_formation"].ids
    base = candidate_frame(ids, ids, {t: r.y_pred for t, r in records.items()})
    levels = add_intervals(base, records)
    truth = {
        t: pd.Series(r.y_true, index=r.ids, dtype=float).reindex(ids).to_numpy()
        for t, r in records.items()
    }
    hit = np.ones(len(ids), dtype=bool)
    for criterion in criteria:
        values = truth[criterion.property]
        hit &= np.isfinite(values)
        if criterion.min is not None:
            hit &= values >= criterion.min
        if criterion.max is not None:
            hit &= values <= criterion.max
    hits = set(np.asarray(ids)[hit])
    lines = [f"screening the {len(ids)} held-out rows: {len(hits)} true hits"]
    forms = {
        "hurdle (default)": base,
        "interval only": base.drop(columns=list(hurdle_columns("band_gap").values())),
    }
    for name, frame in forms.items():
        ranked = rank_with(frame, criteria, RankingSpec(), levels)
        is_hit = ranked["id"].isin(hits).to_numpy()
        p = ranked["p_success"].to_numpy()
        gap_p = ranked["p_band_gap"].to_numpy()
        lines.append(
            f"{name:<17} ranks of the hits {(np.flatnonzero(is_hit) + 1).tolist()}; in top 20: "
            f"{int(is_hit[:20].sum())}, top 50: {int(is_hit[:50].sum())}; mean P(success) of "
            f"hits {p[is_hit].mean():.3f}, of the others {p[~is_hit].mean():.4f}; rows with "
            f"P(success) > 0.01: {int((p > 0.01).sum())}, with P(gap in range) > 0.05: "
            f"{int((gap_p > 0.05).sum())}"
        )
    return lines


def _quintiles(rows: list[dict[str, Any]]) -> str:
    return "  ".join(f"{r['coverage']:.2f}@{r['mean_width']:.3f}" for r in rows)


def interval_lines(m: dict[str, Any]) -> list[str]:
    """The interval measurements of one model's held-out metrics, as printed lines."""
    lines = [
        f"{m['level']:.0%} coverage {m['coverage']:.3f}, mean width {m['mean_width']:.3f}; "
        f"by width quintile (coverage@width): {_quintiles(m['coverage_by_width_quintile'])}"
    ]
    if "coverage_predicted_gap" in m:
        lines.append(
            f"coverage with gap {m['coverage_with_gap']:.3f} ({m['n_with_gap']} rows), on "
            f"the {m['n_predicted_gap']} predicted gaps {m['coverage_predicted_gap']:.3f}; "
            f"mean P(gap) on gap rows {m['mean_probability_gap_rows']:.3f}, on metals "
            f"{m['mean_probability_metal_rows']:.3f}"
        )
    if "conditional_coverage" in m:
        lines.append(
            f"conditional gap interval on rows with a gap: coverage "
            f"{m['conditional_coverage']:.3f}, mean width {m['conditional_mean_width']:.3f}; "
            f"by width quintile {_quintiles(m['conditional_coverage_by_width_quintile'])}"
        )
    if "share_in_domain" in m:
        outside = (
            f", {m['n_out_of_domain']} outside with coverage {m['coverage_out_of_domain']:.3f}"
            if "n_out_of_domain" in m
            else ""
        )
        lines.append(f"in domain {m['share_in_domain']:.3f}{outside}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--featurization",
        default="demo",
        choices=("demo", *EXTRA_FEATURIZERS, "fast", "structure"),
    )
    parser.add_argument("--search", default="random", choices=("none", "random", "halving"))
    parser.add_argument("--iterations", type=int, default=12, help="search candidates")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--width", default="adaptive", choices=("adaptive", "constant"))
    parser.add_argument("--only", help="measure only models whose label contains this text")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()

    settings = Settings()
    spec = load_spec(DEMO_SPEC, settings.data_dir)
    from matscreen.tasks.sources.base import read_source

    started = time.perf_counter()
    records = read_source(spec.sources[0]).records
    split = choose_split([r.id for r in records], spec.split)  # before any featurization or fit
    featurization = featurization_for(args.featurization, spec.featurization)
    table, reused = featurize(records, featurization, args.workers)
    columns = list(table.frame.columns)
    print(
        f"{len(records)} perovskites, {len(columns)} features ({args.featurization}; "
        f"{reused} structures from the store, {len(table.failures)} failed), "
        f"{time.perf_counter() - started:.0f} s; split {spec.split.method} seed "
        f"{spec.split.seed}: {len(split.train_ids)} train / {len(split.test_ids)} held out; "
        f"{os.cpu_count()} cores"
    )
    results = []
    screened: dict[str, Any] = {}
    for label, model_spec in models(args.search, args.iterations, args.width):
        if args.only and args.only not in label:
            continue
        started = time.perf_counter()
        labels = labels_of(records, model_spec.target)
        train = training_arrays(table.frame, labels, split.train_ids)
        ids, x_test, y_test = candidate_arrays(table.frame, labels, split.test_ids)
        test = (ids, x_test, np.array(y_test, dtype=np.float64))
        model = train_surrogate(model_spec, columns, train, spec.split.seed)
        result = evaluate(
            model, columns, train, test, spec.split.seed, importance_repeats=0, n_jobs=2
        )
        baselines = {b["name"]: b for b in result.baselines}
        row = {
            "model": label,
            "target": model_spec.target,
            "held_out": result.metrics,
            "cv_mae": model.cv_metrics.get("mae"),
            "dummy_mae": baselines["dummy (mean)"]["mae"],
            "median_mae": baselines["dummy (median)"]["mae"],
            "magpie_rf_mae": baselines["Magpie + RF"]["mae"],
            "search": model.search,
            "seconds": time.perf_counter() - started,
        }
        results.append(row)
        m = result.metrics
        print(
            f"{label:<38} MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  R2 {m['r2']:.3f}  "
            f"CV MAE {row['cv_mae']:.4f}  | dummy {row['dummy_mae']:.4f}  median "
            f"{row['median_mae']:.4f}  Magpie+RF "
            f"{row['magpie_rf_mae']:.4f}  ({row['seconds']:.0f} s)",
            flush=True,
        )
        for line in interval_lines(m):
            print(f"{'':<38} {line}", flush=True)
        if model.search:
            print(f"{'':<38} best {model.search['best_params']}")
        if SCREENED.get(model_spec.target) == label:
            screened[model_spec.target] = held_out_record(model, result, len(train[0]))
    if len(screened) == len(SCREENED):
        for line in screening_lines(screened, list(spec.criteria)):
            print(line, flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
