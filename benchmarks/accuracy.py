"""Accuracy of matscreen's surrogates, by repeated cross-validation on the shared data.

What it measures
    On the 3,785 CMR cubic perovskites (the demo campaign's source: heat of formation
    ``heat_ref`` and band gap ``max(dir_gap, ind_gap)``, eV): the mean absolute error (MAE)
    and mean error (bias, predicted minus true) of each feature set and model on held-out
    *relaxed* structures, and on the *decorated counterparts* of the same held-out records
    (the ideal cubic cell with the same A, B and anions, as matscreen's ``prototypes``
    source generates it for screening); for the band gap also the precision and recall of
    "has a gap" (gap > 0). Then an ablation of the ``sites`` features, an optional nested
    choice among three algorithms, the time to featurize, fit and predict the whole set,
    and the MAE of a few models on the small Materials Project, Alexandria and OQMD files.

How
    K-fold cross-validation (shuffled; seeds 0, 1, 2 for the repeats), the same folds for
    every row of a table; numbers are means over all folds, ``±`` the standard deviation of
    the repeat means. Features are computed once per run by ``featurize_batch`` in two
    worker processes (timed per feature set) and kept in memory. Models are built as
    matscreen builds them (``build_pipeline`` with ``DEFAULT_PARAMS``; fits use 2 threads).
    The band-gap model is matscreen's two-stage model (``build_model`` of a
    ``two_stage_gap`` spec: a classifier "has a gap" on all rows, a regressor on the rows
    with a gap) with the decision probability fixed at 0.5; matscreen's training chooses
    it by an inner 5-fold CV, which costs five more fits per model and is measured only
    with ``--nested``. Baselines: the training mean, and matbench's Magpie + random forest
    (matminer's Magpie statistics, median-imputed, and 500 trees of scikit-learn's
    ``RandomForestRegressor``), on the first repeat's folds only (it costs as much as all
    other rows together). The ensemble is the mean of xgboost and gradient boosting.

Feature sets
    ``fast`` (Magpie statistics, stoichiometry, valence orbitals, ionic character,
    density, symmetry), ``demo-2025`` (the previous demo's: ``fast`` plus 22 Magpie
    properties by coordination), ``sites`` (the composition featurizers plus element
    properties by site role), ``relaxed`` (``sites`` plus density and element properties
    by effective coordination number). ``structure`` (CrystalNN) is left out: too slow.

Targets
    Heat of formation MAE at most 0.08 eV on relaxed structures and at most 0.10 eV on
    decorated ones, with a bias within ±0.03 eV; band-gap MAE at most 0.06 eV with a
    recall of "has a gap" of at least 0.8; featurizing, fitting and predicting the 3,785
    perovskites within 60 s on 2 cores.

Usage::

    python benchmarks/accuracy.py [--repeats 3] [--folds 5] [--quick] [--nested]
        [--out results.json]

``--quick`` runs one repeat of fewer rows (a smoke run, about 8 minutes on an idle
2-core machine; the default run takes about 20); ``--nested`` adds the nested model
choice and the two-stage model with its decision chosen by CV (about 15 minutes more).
Tables are printed as markdown as they complete; ``--out`` writes every number, per fold.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from _accuracy_data import (
    Dataset,
    Featurizer,
    add_counterparts,
    featurization_table,
    load_cmr,
    load_small_sets,
    row,
    table,
)
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from matscreen.flows.settings import Settings
from matscreen.tasks.models.estimators import build_model
from matscreen.tasks.models.pipeline import build_pipeline
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec

THREADS = {"n_jobs": 2}
GAP_SPEC = ModelSpec(
    target="band_gap", kind="two_stage_gap", clip_min=0.0, gap_decision=0.5, params=THREADS
)

#: Rows of the CMR tables: (feature set, model, in the quick run).
HEAT_ROWS = [("sites", "dummy", True), ("magpie", "magpie_rf", True),
             ("fast", "xgboost", False), ("demo-2025", "xgboost", False),
             ("sites", "xgboost", True), ("relaxed", "xgboost", True),
             ("sites", "random_forest", False), ("sites", "gradient_boosting", True),
             ("sites", "ensemble", True)]  # fmt: skip
GAP_ROWS = [("sites", "dummy", True), ("magpie", "magpie_rf", True),
            ("demo-2025", "two_stage", False), ("sites", "two_stage", True),
            ("relaxed", "two_stage", False)]  # fmt: skip
NAMES = {
    "dummy": "dummy (training mean)",
    "magpie_rf": "Magpie + RF (500 trees), first repeat",
    "ensemble": "mean of xgboost and gradient_boosting",
    "two_stage": "two-stage xgboost",
}
#: Magpie + RF runs on the first repeat's folds only: 500 full-depth trees cost 16-25 s
#: a fold on 2 cores, about as much as all the other rows of a table together.
BASELINE_REPEATS = 1

HEAT_METRICS = ["mae", "bias", "mae_dec", "bias_dec"]
GAP_METRICS = ["mae", "mae_dec", "precision", "recall", "precision_dec", "recall_dec"]

Plan = list[tuple[int, np.ndarray, np.ndarray]]
FitPredict = Callable[[int, np.ndarray, np.ndarray], dict[str, np.ndarray]]


def fold_plan(n_rows: int, folds: int, repeats: int) -> Plan:
    """(repeat, training rows, held-out rows) of every fold, repeat r shuffled with seed r."""
    index = np.zeros((n_rows, 1))
    return [
        (r, train, test)
        for r in range(repeats)
        for train, test in KFold(folds, shuffle=True, random_state=r).split(index)
    ]


def regressor(model: str, seed: int) -> Any:
    """An unfitted regressor: a baseline, or a matscreen pipeline with its defaults."""
    if model == "dummy":
        return DummyRegressor(strategy="mean")
    if model == "magpie_rf":
        forest = RandomForestRegressor(n_estimators=500, random_state=seed, **THREADS)
        return make_pipeline(SimpleImputer(strategy="median"), forest)
    params = THREADS if model in ("xgboost", "random_forest") else {}
    return build_pipeline(model, False, params, seed)


def regression(model: str, x: np.ndarray, x_dec: np.ndarray, y: np.ndarray) -> FitPredict:
    """Fit one regressor on a fold's training rows; predict its held-out rows, relaxed
    (``pred``) and decorated (``pred_dec``)."""

    def fit_predict(seed: int, train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        fitted = regressor(model, seed).fit(x[train], y[train])
        return {"pred": fitted.predict(x[test]), "pred_dec": fitted.predict(x_dec[test])}

    return fit_predict


def two_stage(
    spec: ModelSpec, x: np.ndarray, x_dec: np.ndarray, y: np.ndarray, with_cv: bool = False
) -> FitPredict:
    """Fit matscreen's two-stage gap model; predict gaps and "has a gap" (``gap``).

    ``with_cv`` trains it as matscreen does (``train_surrogate``, decision chosen by the
    inner CV); otherwise it is built with the spec's decision and fitted once.
    """

    def fit_predict(seed: int, train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        if with_cv:
            labels = [f"f{i}" for i in range(x.shape[1])]
            train_part = ([str(i) for i in train], x[train], y[train])
            fitted = train_surrogate(spec, labels, train_part, seed).fitted()
        else:
            fitted = build_model(spec, spec.params, seed).fit(x[train], y[train])
        found = {"decision": np.full(len(test), fitted.decision)}
        for suffix, rows in (("", x[test]), ("_dec", x_dec[test])):
            probability = fitted.gap_probability(rows)
            point = fitted.combine(probability, fitted.regressor_.predict(rows))
            found["pred" + suffix] = np.maximum(point, spec.clip_min or 0.0)
            found["gap" + suffix] = (probability >= fitted.decision).astype(float)
        return found

    return fit_predict


def cross_predict(fit_predict: FitPredict, plan: Plan, n_rows: int) -> dict[str, np.ndarray]:
    """Out-of-fold outputs of every repeat (``name -> (repeats, rows)``) and the seconds
    each fold took to fit and predict."""
    outputs: dict[str, np.ndarray] = {}
    seconds = []
    for repeat, train, test in plan:
        started = time.perf_counter()
        for name, values in fit_predict(repeat, train, test).items():
            outputs.setdefault(name, np.full((plan[-1][0] + 1, n_rows), np.nan))
            outputs[name][repeat, test] = values
        seconds.append(time.perf_counter() - started)
    return {**outputs, "seconds": np.array(seconds)}


def scores(outputs: dict[str, np.ndarray], y: np.ndarray, has_dec: np.ndarray, plan: Plan) -> dict:
    """Per-fold MAE and bias, held-out and decorated, and precision and recall of "has a
    gap" where the outputs decide it; their means over the folds and the standard deviation
    of the repeat means."""
    per_fold: dict[str, list[float]] = {"seconds": list(outputs["seconds"])}
    for repeat, _, test in plan:
        for suffix, rows in (("", test), ("_dec", test[has_dec[test]])):
            if not len(rows):
                continue
            error = outputs["pred" + suffix][repeat, rows] - y[rows]
            per_fold.setdefault("mae" + suffix, []).append(float(np.mean(np.abs(error))))
            per_fold.setdefault("bias" + suffix, []).append(float(np.mean(error)))
            if "gap" + suffix in outputs:
                said, truth = outputs["gap" + suffix][repeat, rows] > 0.5, y[rows] > 0
                hits = float(np.sum(said & truth))
                precision = hits / said.sum() if said.any() else np.nan
                per_fold.setdefault("precision" + suffix, []).append(precision)
                per_fold.setdefault("recall" + suffix, []).append(hits / max(truth.sum(), 1))
    repeats = np.array([r for r, _, _ in plan])
    mean, spread = {}, {}
    for name, values in per_fold.items():
        values_array = np.array(values, dtype=float)
        finite = np.isfinite(values_array)  # precision is undefined where nothing is predicted
        mean[name] = float(values_array[finite].mean()) if finite.any() else None
        means = [values_array[finite & (repeats == r)] for r in np.unique(repeats)]
        means = [m.mean() for m in means if len(m)]
        spread[name] = float(np.std(means)) if len(means) > 1 else None
    return {"mean": mean, "repeat_std": spread, "per_fold": per_fold}


def cells(summary: dict[str, Any], metrics: list[str], digits: int = 4) -> list[str]:
    """Table cells: each metric's mean, ``± std`` of the repeat means when there are
    several, and the seconds per fold."""
    found = []
    for name, places in [*((m, digits) for m in metrics), ("seconds", 1)]:
        value, std = summary["mean"].get(name), summary["repeat_std"].get(name)
        if value is None or not np.isfinite(value):
            found.append("–")
            continue
        found.append(f"{value:.{places}f}" + (f" ± {std:.{places}f}" if std else ""))
    return found


def cmr_tables(data: Dataset, features: Featurizer, plan: Plan, quick: bool) -> dict[str, Any]:
    """The heat-of-formation, band-gap and ablation tables of the CMR perovskites."""
    has_dec = np.array([c is not None for c in data.counterparts])
    baseline_plan = [fold for fold in plan if fold[0] < BASELINE_REPEATS]
    results: dict[str, Any] = {"heat": [], "gap": [], "ablation": []}
    kept: dict[tuple[str, str], dict[str, np.ndarray]] = {}

    def measured(set_name: str, model: str, target: str) -> dict[str, Any]:
        x = features.features(data, set_name).values
        x_dec = features.features(data, set_name, decorated=True).values
        y = data.targets[target]
        rows = baseline_plan if model == "magpie_rf" else plan
        if model == "two_stage":
            outputs = cross_predict(two_stage(GAP_SPEC, x, x_dec, y), rows, len(y))
        elif model == "ensemble":
            one, other = kept[(set_name, "xgboost")], kept[(set_name, "gradient_boosting")]
            outputs = {k: (one[k] + other[k]) / (1 if k == "seconds" else 2) for k in one}
        else:
            outputs = kept.get((set_name, model)) if target == "heat_of_formation" else None
            if outputs is None:
                outputs = cross_predict(regression(model, x, x_dec, y), rows, len(y))
        if target == "heat_of_formation":
            kept[(set_name, model)] = outputs
        return {"features": set_name, "model": model, **scores(outputs, y, has_dec, rows)}

    table("Heat of formation (eV), CMR perovskites", ["features", "model", "MAE", "bias",
          "MAE decorated", "bias decorated", "s/fold"])  # fmt: skip
    for set_name, model, in_quick in HEAT_ROWS:
        if in_quick or not quick:
            results["heat"].append(measured(set_name, model, "heat_of_formation"))
            row([set_name, NAMES.get(model, model), *cells(results["heat"][-1], HEAT_METRICS)])
    table("Band gap (eV), CMR perovskites; precision and recall of 'has a gap'",
          ["features", "model", "MAE", "MAE decorated", "precision", "recall",
           "precision decorated", "recall decorated", "s/fold"])  # fmt: skip
    for set_name, model, in_quick in GAP_ROWS:
        if in_quick or not quick:
            results["gap"].append(measured(set_name, model, "band_gap"))
            row([set_name, NAMES.get(model, model), *cells(results["gap"][-1], GAP_METRICS, 3)])
    table("Ablation of `sites`: heat of formation (eV), xgboost",
          ["features", "columns", "ms/structure", "MAE", "MAE decorated", "bias decorated",
           "s/fold"])  # fmt: skip
    for set_name, label in [
        ("composition", "composition only"),
        ("sites", "composition + roles (`sites`)"),
        ("roles", "roles only"),
    ]:
        found = measured(set_name, "xgboost", "heat_of_formation")
        relaxed = features.features(data, set_name)
        found["ms_per_structure"] = ms = 1000 * relaxed.seconds_per_structure
        results["ablation"].append(found)
        metrics = ["mae", "mae_dec", "bias_dec"]
        row([label, str(len(relaxed.labels)), f"{ms:.2f}", *cells(found, metrics)])
    return results


def nested_tables(data: Dataset, features: Featurizer, plan: Plan) -> dict[str, Any]:
    """Nested model choice on ``sites`` (3-fold inner CV) and the two-stage gap model
    trained as matscreen trains it (decision probability chosen by inner 5-fold CV)."""
    has_dec = np.array([c is not None for c in data.counterparts])
    x = features.features(data, "sites").values
    x_dec = features.features(data, "sites", decorated=True).values
    y = data.targets["heat_of_formation"]
    candidates = ("xgboost", "gradient_boosting", "random_forest")
    picks: list[str] = []

    def choose_and_fit(seed: int, train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        errors = dict.fromkeys(candidates, 0.0)
        for fit_rows, check_rows in KFold(3, shuffle=True, random_state=seed).split(train):
            fit_rows, check_rows = train[fit_rows], train[check_rows]
            for model in candidates:
                fitted = regressor(model, seed).fit(x[fit_rows], y[fit_rows])
                errors[model] += float(
                    np.mean(np.abs(fitted.predict(x[check_rows]) - y[check_rows]))
                )
        picks.append(min(errors, key=errors.__getitem__))
        return regression(picks[-1], x, x_dec, y)(seed, train, test)

    heat = scores(cross_predict(choose_and_fit, plan, len(y)), y, has_dec, plan)
    heat["picked"] = {m: picks.count(m) for m in candidates}
    table("Nested choice on `sites` (3-fold inner CV), heat of formation (eV)",
          ["MAE", "bias", "MAE decorated", "bias decorated", "s/fold", "picked"])  # fmt: skip
    row([*cells(heat, HEAT_METRICS), ", ".join(f"{m} {n}" for m, n in heat["picked"].items())])
    y = data.targets["band_gap"]
    spec = GAP_SPEC.model_copy(update={"gap_decision": None, "interval": "none"})
    outputs = cross_predict(two_stage(spec, x, x_dec, y, with_cv=True), plan, len(y))
    gap = scores(outputs, y, has_dec, plan)
    gap["decisions"] = sorted({float(d) for d in outputs["decision"].ravel() if d == d})
    table("Two-stage gap model on `sites`, decision chosen by inner 5-fold CV (band gap, eV)",
          ["MAE", "MAE decorated", "precision", "recall", "precision decorated",
           "recall decorated", "s/fold", "decisions"])  # fmt: skip
    row([*cells(gap, GAP_METRICS, 3), str(gap["decisions"])])
    return {"heat_model_choice": heat, "gap_decision_by_cv": gap}


def timing_goal(data: Dataset, features: Featurizer) -> dict[str, float]:
    """Wall seconds to featurize all perovskites with ``sites`` (2 worker processes,
    already started), fit the heat and two-stage gap models on all of them, predict all;
    and how long matscreen's training (with its inner CV for intervals and the gap
    decision) takes for each model."""
    started = time.perf_counter()
    x = features.compute("sites", data.ids, data.structures).values
    featurized = time.perf_counter()
    heat = regressor("xgboost", 0).fit(x, data.targets["heat_of_formation"])
    gap = build_model(GAP_SPEC, GAP_SPEC.params, 0).fit(x, data.targets["band_gap"])
    fitted = time.perf_counter()
    heat.predict(x), gap.predict(x)
    done = time.perf_counter()
    timing = {
        "featurize_s": featurized - started,
        "fit_s": fitted - featurized,
        "predict_s": done - fitted,
        "total_s": done - started,
    }
    labels = features.features(data, "sites").labels
    for target, spec in (
        ("heat_of_formation", ModelSpec(target="heat_of_formation", params=THREADS)),
        ("band_gap", GAP_SPEC.model_copy(update={"gap_decision": None})),
    ):
        begun = time.perf_counter()
        train_surrogate(spec, labels, (list(data.ids), x, data.targets[target]), 0)
        timing[f"train_surrogate_{target}_s"] = time.perf_counter() - begun
    table("Featurize + fit + predict the 3,785 perovskites (`sites`, 2 processes), goal ≤ 60 s",
          ["featurize s", "fit s", "predict s", "total s",
           "`train_surrogate` heat s", "`train_surrogate` gap s"])  # fmt: skip
    row([f"{value:.1f}" for value in timing.values()])
    return timing


def target_lines(cmr: dict[str, Any], timing: dict[str, float]) -> list[str]:
    """How the best rows compare with the project's targets."""

    def best(rows: list[dict], metric: str, keep: Callable[[dict], bool] = bool) -> str:
        chosen = [r for r in rows if keep(r["mean"]) and metric in r["mean"]]
        if not chosen:
            return "no row"
        top = min(chosen, key=lambda r: r["mean"][metric])
        name = NAMES.get(top["model"], top["model"])
        return f"{top['mean'][metric]:.4f} ({name} on `{top['features']}`)"

    heat, gap = cmr["heat"], cmr["gap"]
    recall = [r["mean"]["recall"] for r in gap if "recall" in r["mean"]]
    return [
        f"- heat of formation, relaxed: best MAE {best(heat, 'mae')}; target ≤ 0.08 eV",
        "- heat of formation, decorated, bias within ±0.03 eV: best MAE "
        f"{best(heat, 'mae_dec', lambda m: abs(m['bias_dec']) <= 0.03)}; target ≤ 0.10 eV",
        f"- band gap: best MAE {best(gap, 'mae')}, best recall of 'has a gap' "
        f"{max(recall, default=float('nan')):.3f}; targets ≤ 0.06 eV and ≥ 0.8",
        f"- featurize + fit + predict: {timing['total_s']:.1f} s; target ≤ 60 s on 2 cores",
    ]


def small_set_table(features: Featurizer, settings: Settings, folds: int, repeats: int,
                    quick: bool) -> list[dict[str, Any]]:  # fmt: skip
    """MAE on the Materials Project, Alexandria and OQMD files (tiny sets: noisy numbers).
    Band gaps here are fitted by plain regressors; a target whose labels are all equal
    (Alexandria's 98 gaps are all 0) is not fitted."""
    models = [("sites", "dummy"), ("magpie", "magpie_rf"), ("sites", "xgboost"),
              ("relaxed", "xgboost")][:: 2 if quick else 1]  # fmt: skip
    names = [NAMES.get(m, f"{m} `{s}`") for s, m in models]
    table("Other data sets: MAE (eV/atom for formation energy, eV for band gap)",
          ["data set", "target", "rows", *names])  # fmt: skip
    results = []
    for data in load_small_sets(settings):
        for target, labels in data.targets.items():
            rows = np.flatnonzero(np.isfinite(labels))
            y = labels[rows]
            if np.ptp(y) == 0:
                unfitted = [f"all {y[0]:g}: not fitted", *["–"] * (len(models) - 1)]
                row([data.name, target, str(len(rows)), *unfitted])
                continue
            plan = fold_plan(len(rows), folds, repeats)
            found = []
            for set_name, model in models:
                x = features.features(data, set_name).values[rows]
                folds_used = [f for f in plan if f[0] < BASELINE_REPEATS or model != "magpie_rf"]
                outputs = cross_predict(regression(model, x, x, y), folds_used, len(y))
                summary = scores(outputs, y, np.zeros(len(y), dtype=bool), folds_used)
                results.append({"data": data.name, "target": target, "features": set_name,
                                "model": model, "rows": len(rows), **summary})  # fmt: skip
                found.append(cells(summary, ["mae"], 3)[0])
            row([data.name, target, str(len(rows)), *found])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer rows")
    parser.add_argument("--nested", action="store_true", help="add the inner-CV measurements")
    parser.add_argument("--out", type=Path, help="also write every number as JSON")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    started = time.perf_counter()
    settings = Settings()
    data = load_cmr(settings)
    matched = add_counterparts(data)
    report: dict[str, Any] = {
        "date": str(date.today()),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg()[0],
        "folds": args.folds,
        "repeats": repeats,
        "records": len(data.ids),
        "with_counterpart": matched,
    }
    print(
        f"# Accuracy, {report['date']}: {len(data.ids)} CMR perovskites, {matched} with a "
        f"decorated counterpart; {args.folds}-fold CV x {repeats} repeats; "
        f"{report['cores']} cores, load average {report['load_average_start']:.2f} at the start",
        flush=True,
    )
    features = Featurizer(workers=2)
    try:
        report["featurization"] = featurization_table(data, features)
        plan = fold_plan(len(data.ids), args.folds, repeats)
        report["cmr"] = cmr_tables(data, features, plan, args.quick)
        report["timing_goal"] = timing_goal(data, features)
        print("\n### Targets\n\n" + "\n".join(target_lines(report["cmr"], report["timing_goal"])))
        if args.nested:
            report["nested"] = nested_tables(data, features, plan)
        report["small_sets"] = small_set_table(features, settings, args.folds, repeats, args.quick)
    finally:
        features.close()
    report["runtime_s"] = time.perf_counter() - started
    report["load_average_end"] = os.getloadavg()[0]
    print(f"\nruntime {report['runtime_s']:.0f} s; load average {report['load_average_end']:.2f} "
          "at the end", flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
