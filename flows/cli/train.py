"""``matscreen train`` and ``matscreen predict``: their options, and the flows they run."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from matscreen.flows.cli.common import number
from matscreen.flows.settings import Settings
from matscreen.flows.train import (
    TRAIN_PRESET,
    featurization_of,
    load_model_folder,
    predict_properties,
    train_model,
)
from matscreen.tasks.errors import ModelError, SpecError
from matscreen.tasks.files import writable_folder
from matscreen.tasks.models.inputs import check_input
from matscreen.tasks.spec import (
    AUTO_PRESET,
    FeaturizationSpec,
    ModelSpec,
    SplitSpec,
    describe_errors,
)


def _param(value: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (numbers, booleans, strings)."""
    import yaml

    key, sep, raw = value.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"--param {value!r}: expected KEY=VALUE, e.g. max_depth=6")
    return key.strip(), yaml.safe_load(raw)


def _validated(cls: Any, data: dict[str, Any], option: str) -> Any:
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{option}: {describe_errors(exc)}") from exc


def model_options(args: argparse.Namespace) -> tuple[ModelSpec, SplitSpec, FeaturizationSpec]:
    """The model, split and featurization specs the ``train`` arguments describe.

    Raises
    ------
    SpecError
        If an option is invalid (unknown algorithm, level outside (0, 1) …).
    """
    model: dict[str, Any] = {
        "target": args.target,
        "algorithm": args.algorithm,
        "kind": args.kind,
        "params": dict(_param(p) for p in args.param or []),
        "cv_folds": args.folds,
        "search": args.search,
        "search_iterations": args.search_iterations,
        "interval": args.interval,
        "interval_level": args.level,
        "metal_threshold": args.metal_threshold,
    }
    for key in ("clip_min", "positive_at_most", "select_features", "scale"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    featurizers = []
    for value in args.featurizer or []:
        kind, sep, cls = value.partition(":")
        if not sep:
            raise SpecError(f"--featurizer {value!r}: expected INPUT:CLASS, e.g. structure:...")
        featurizers.append({"input": kind, "cls": cls})
    return (
        _validated(ModelSpec, model, "train options"),
        _validated(
            SplitSpec,
            {"method": args.split, "test_fraction": args.test_fraction, "seed": args.seed},
            "split options",
        ),
        _validated(
            FeaturizationSpec, {"preset": args.preset, "featurizers": featurizers}, "--preset"
        ).resolved(*TRAIN_PRESET),
    )


def as_flow(function: Any) -> Any:
    """A flow function of :mod:`matscreen.flows.train` as a Prefect flow named after it
    (``train-model``).

    The flows are built on first use, so that the command line starts without loading
    Prefect for commands that do not run them.
    """
    from prefect import flow

    return flow(name=function.__name__.replace("_", "-"))(function)


def _run(
    function: Any, search_on_dask: bool = False, **kwargs: Any
) -> tuple[dict[str, Any], float]:
    """Run a flow on Dask with a Prefect API, as ``campaign run`` does.

    With ``search_on_dask`` the flow also gets the scheduler's address for the fits of a
    hyperparameter search.
    """

    from matscreen.flows.runtime import dask_scheduler, dask_task_runner, prefect_api

    settings = Settings()
    started = time.perf_counter()
    with prefect_api(), dask_scheduler(settings) as address:
        runner = dask_task_runner(address)
        if search_on_dask:
            kwargs["dask_address"] = address
        result = as_flow(function).with_options(task_runner=runner)(**kwargs)
    return result, time.perf_counter() - started


def _train(args: argparse.Namespace) -> int:
    spec, split, featurization = model_options(args)
    minimum = max(10, 2 * spec.cv_folds)
    rows = check_input(args.input, spec.target, min_rows=minimum)  # fails here, before any work
    out = args.out or Path("models") / f"{spec.target}-{time.strftime('%Y%m%d-%H%M%S')}"
    if args.out is not None:
        writable_folder(args.out)  # and so does a model folder that cannot be written
    print(f"train {spec.target} ({spec.kind}, {spec.algorithm}) on {rows} rows of {args.input}")
    result, seconds = _run(
        train_model,
        input_path=str(Path(args.input).resolve()),
        model=spec.model_dump(mode="json"),
        split=split.model_dump(mode="json"),
        featurization=featurization.model_dump(mode="json"),
        out_dir=str(Path(out).resolve()),
        unit=args.unit,
        search_on_dask=spec.search != "none",
    )
    _print_metrics(result["metrics"])
    print(f"model folder {result['out_dir']} ({seconds:.0f} s); run {result['run_id']}")
    return 0


def _print_metrics(document: dict[str, Any]) -> None:
    held = document["held_out"]
    split = document["split"]
    print(
        f"held-out ({split['method']} split, seed {split['seed']}): "
        f"{split['n_train']} train / {split['n_test']} test"
    )
    names = (
        ["precision", "recall", "f1", "roc_auc"]
        if document["kind"] == "classifier"
        else ["mae", "rmse", "r2"]
    )
    print(f"  {'model':<28}" + "".join(f"{n:>10}" for n in names))
    rows = [
        (f"{document['algorithm']} ({document['kind']})", held),
        *[(b["name"], b) for b in document["baselines"]],
    ]
    for name, metrics in rows:
        print(f"  {name:<28}" + "".join(f"{number(metrics.get(n), 4):>10}" for n in names))
    if "coverage" in held:
        print(
            f"  {held['level']:.0%} intervals: held-out coverage {number(held['coverage'], 4)}, "
            f"mean width {number(held['mean_width'], 4)}"
        )


def _predict(args: argparse.Namespace) -> int:
    model, _ = load_model_folder(args.model)  # fails here, before any work
    featurization_of(model, str(args.model))
    check_input(args.input)
    if args.level is not None and not 0 < args.level < 1:
        raise ModelError(f"--level {args.level}: must be between 0 and 1")
    if args.hull is not None:
        from matscreen.tasks.models.stability import load_reference_entries

        if model.kind != "regressor":
            raise ModelError(f"--hull: needs a formation-energy regressor, not a {model.kind}")
        load_reference_entries(args.hull)
    if not str(args.output).lower().endswith(".csv"):
        raise ModelError(f"--output {args.output}: expected a .csv file name")
    if Path(args.output).is_dir():
        raise ModelError(f"--output {args.output}: is a folder; expected a .csv file name")
    writable_folder(Path(args.output).parent)
    result, seconds = _run(
        predict_properties,
        model_dir=str(Path(args.model).resolve()),
        input_path=str(Path(args.input).resolve()),
        output_path=str(Path(args.output).resolve()),
        level=args.level,
        hull_references=str(Path(args.hull).resolve()) if args.hull else None,
    )
    print(f"{result['n_rows']} predictions of {model.target} written to {result['output']}")
    for record_id, message in sorted(result["skipped"].items()):
        print(f"  skipped {record_id}: {message}", file=sys.stderr)
    print(f"({seconds:.0f} s; run {result['run_id']})")
    return 0


def add_train_parsers(commands: Any) -> None:
    """Register the ``train`` and ``predict`` subcommands on the CLI's subparsers."""
    from matscreen.tasks.featurize.presets import PRESETS
    from matscreen.tasks.spec import MODEL_ALGORITHMS

    train = commands.add_parser(
        "train",
        help="train a surrogate model on a file of structures and labels",
        description="Train a surrogate on a CSV (cif column) or JSON lines (structure dicts): "
        "held-out split, cross-validation, conformal intervals, baselines, model card.",
    )
    train.add_argument("--input", required=True, type=Path, help="CSV or JSON-lines file")
    train.add_argument("--target", required=True, help="column holding the label")
    train.add_argument(
        "--preset",
        default=AUTO_PRESET,
        choices=sorted([*PRESETS, AUTO_PRESET]),
        help=f"featurizers (default {AUTO_PRESET}: {TRAIN_PRESET[0]}; use sites for a model "
        "that will predict generated, unrelaxed structures)",
    )
    train.add_argument("--out", type=Path, help="model folder (default models/TARGET-TIME)")
    train.add_argument(
        "--featurizer",
        action="append",
        help="extra featurizer INPUT:CLASS, e.g. "
        "structure:matscreen.tasks.featurize.site_resolved.CoordinationElementProperty",
    )
    train.add_argument("--unit", default="", help="unit of the label, for the card and plots")
    train.add_argument("--algorithm", default="xgboost", choices=MODEL_ALGORITHMS)
    train.add_argument(
        "--kind", default="regressor", choices=("regressor", "two_stage_gap", "classifier")
    )
    train.add_argument("--param", action="append", help="estimator parameter KEY=VALUE")
    train.add_argument("--clip-min", dest="clip_min", type=float, help="lower bound of outputs")
    train.add_argument("--metal-threshold", dest="metal_threshold", type=float, default=0.0)
    train.add_argument(
        "--positive-at-most",
        dest="positive_at_most",
        type=float,
        help="classifier: class 1 where the label is at most this",
    )
    train.add_argument(
        "--scale", action=argparse.BooleanOptionalAction, default=None, help="standardize"
    )
    train.add_argument(
        "--select-features", dest="select_features", type=int, help="keep the N best features"
    )
    train.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    train.add_argument("--search", default="none", choices=("none", "random", "halving"))
    train.add_argument("--search-iterations", dest="search_iterations", type=int, default=12)
    train.add_argument("--interval", default="cv", choices=("cv", "split", "none"))
    train.add_argument("--level", type=float, default=0.9, help="interval coverage level")
    train.add_argument("--split", default="random", choices=("random", "composition", "chemsys"))
    train.add_argument("--test-fraction", dest="test_fraction", type=float, default=0.2)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=_train)

    predict = commands.add_parser(
        "predict",
        help="predict with a trained model",
        description="Write id, prediction, lower, upper (and probability) for each structure.",
    )
    predict.add_argument("--model", required=True, type=Path, help="model folder from train")
    predict.add_argument("--input", required=True, type=Path, help="CSV or JSON-lines file")
    predict.add_argument("--output", required=True, type=Path, help="CSV file to write")
    predict.add_argument("--level", type=float, help="interval level (default: the model's)")
    predict.add_argument(
        "--hull",
        type=Path,
        help="elemental reference entries (JSON, may be gzipped): add hull distances of the "
        "predicted formation energies per atom against them and the training phases",
    )
    predict.set_defaults(handler=_predict)
