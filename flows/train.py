"""Train a surrogate on a file of structures and labels, or apply one to new structures.

``matscreen train --input FILE --target COLUMN [--preset NAME] [--out DIR]`` reads the
structures and labels, chooses the held-out rows, featurizes (through the feature store),
fits with cross-validation and conformal calibration on the training rows, scores the
held-out rows next to the baselines and writes the model folder:

===================  =======================================================
``model.json``       the model: estimator (xgboost JSON or skops), feature
                     labels, featurization, calibration, versions
``metrics.json``     held-out and cross-validated metrics, baselines, split
``card.md``          the model card
``parity.png``,      held-out parity and residual plots
``residuals.png``
``importance.csv``   permutation importance on the held-out rows
``held_out.csv``     id, label, prediction, lower, upper of the held-out rows
``provenance.json``  the run and the model's catalog entity
===================  =======================================================

``matscreen predict --model DIR --input FILE --output FILE.csv`` computes the model's
features for new structures and writes id, prediction, lower, upper (and probability for
classifiers and two-stage gap models). Both commands record their steps in the catalog.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matscreen.flows.heap import rare_collections
from matscreen.flows.settings import Settings
from matscreen.tasks.errors import InputError, ModelError, SpecError
from matscreen.tasks.files import writable_folder
from matscreen.tasks.models.inputs import check_input
from matscreen.tasks.spec import (
    AUTO_PRESET,
    FeaturizationSpec,
    ModelSpec,
    SplitSpec,
    describe_errors,
)

if TYPE_CHECKING:  # the flows' own imports load Prefect, Dask and scikit-learn when they run
    import pandas as pd

    from matscreen.catalog import Catalog
    from matscreen.catalog.recorder import PredictionRecorder
    from matscreen.tasks.models.surrogate import SurrogateModel

#: File of the model document in a model folder.
MODEL_FILE = "model.json"

#: File of a regressor's training phases (formula, label) in a model folder.
PHASES_FILE = "phases.csv"

#: What ``--preset auto`` (the default) takes, and why: a file of labelled structures is
#: DFT-relaxed, and so are usually the structures a model trained here predicts.
TRAIN_PRESET = (
    "relaxed",
    "the training structures are relaxed cells, so features include their geometry; a model "
    "that will predict generated, unrelaxed structures should use --preset sites",
)


def _recorder(
    catalog: Catalog, settings: Settings, name: str, parameters: dict[str, Any]
) -> PredictionRecorder:
    import getpass
    import socket

    from prefect.runtime import flow_run

    from matscreen.catalog import ArtifactStore
    from matscreen.catalog.recorder import PredictionRecorder
    from matscreen.flows.runtime import git_commit, software_versions

    software = software_versions()
    return PredictionRecorder(
        catalog,
        ArtifactStore(settings.artifact_dir),
        str(flow_run.id),
        name,
        parameters,
        software,
        git_commit(),
        getpass.getuser(),
        socket.gethostname(),
    )


def _read_records(
    path: Path,
    recorder: PredictionRecorder,
    settings: Settings,
    target: str | None,
    keep_duplicates: bool = False,
) -> tuple[list[Any], dict[str, str], list[Any], list[str]]:
    """Ingest the input file: records, record entity ids, failures, snapshot ids.

    Training keeps one record per distinct structure (a repeated structure on both sides
    of the split would leak); prediction keeps every row the user gave, repeats marked
    ``duplicate_of`` the first record of their structure (which alone holds it).
    """
    from matscreen.flows.ingest import ingest_and_record
    from matscreen.tasks.models.inputs import input_source
    from matscreen.tasks.sources.dedup import unique_records

    ingested = ingest_and_record([input_source(path, target)], recorder, settings.source_state_dir)
    failures = [f for result in ingested.results for f in result.failures]
    records = (
        [r for result in ingested.results for r in result.records]
        if keep_duplicates
        else unique_records(ingested.results)
    )
    return records, ingested.record_ids, failures, ingested.snapshot_ids


def _write(path: Path, data: bytes | str) -> str:
    from matscreen.tasks.files import write_atomically

    write_atomically(path, data.encode() if isinstance(data, str) else data)
    return str(path)


def train_model(
    input_path: str,
    model: dict[str, Any],
    split: dict[str, Any],
    featurization: dict[str, Any],
    out_dir: str,
    unit: str = "",
    dask_address: str | None = None,
) -> dict[str, Any]:
    """Train one surrogate on a file and write its model folder.

    Runs as the Prefect flow ``train-model`` (``as_flow(train_model)``; the featurization
    maps Prefect tasks on the flow's task runner).

    Parameters
    ----------
    input_path
        CSV (``cif`` column) or JSON lines (``structure`` dicts) with the label column.
    model, split, featurization
        A :class:`ModelSpec`, :class:`SplitSpec` and :class:`FeaturizationSpec` as dicts.
    out_dir
        The model folder to write.
    unit
        The label's unit, for plots and the card.
    dask_address
        Dask scheduler on which the hyperparameter search runs its fits.

    Returns
    -------
    dict
        ``run_id``, ``out_dir``, ``metrics`` (the metrics document) and ``files``.

    Raises
    ------
    InputError
        If rows of the file cannot be read.
    ModelError
        If too few rows featurize, or the fit fails.
    """
    import pandas as pd

    from matscreen.catalog import Catalog
    from matscreen.flows.featurize import featurize_and_record, model_featurization
    from matscreen.tasks.dataset import (
        candidate_arrays,
        labels_of,
        training_arrays,
    )
    from matscreen.tasks.featurize import featurization_config
    from matscreen.tasks.models.evaluation import fit_and_evaluate
    from matscreen.tasks.runinfo import traced
    from matscreen.tasks.split import choose_split, record_groups

    settings = Settings()
    spec = ModelSpec.model_validate(model)
    split_spec = SplitSpec.model_validate(split)
    featurization_spec = FeaturizationSpec.model_validate(featurization)
    # Resolving the featurizers refuses an unknown one before the input is read.
    featurization_config(featurization_spec)
    path, out = Path(input_path), Path(out_dir)
    parameters = {"input": str(path.resolve()), "out_dir": str(out.resolve()), "model": model}
    with Catalog(settings.catalog_url) as catalog:
        recorder = _recorder(catalog, settings, "train-model", parameters)
        with recorder.running(), rare_collections():
            records, record_ids, failures, snapshots = _read_records(
                path, recorder, settings, spec.target
            )
            if failures:
                shown = "; ".join(f.message for f in failures[:5])
                raise InputError(
                    f"{path}: {len(failures)} rows cannot be used for training: {shown}"
                )
            groups = record_groups(records, split_spec.method)
            chosen = traced(choose_split)([r.id for r in records], split_spec, groups)
            split_id = recorder.split(chosen.value, chosen.run, snapshots)
            table, features_id, reused = featurize_and_record(
                records, featurization_spec, settings, recorder, record_ids
            )
            columns = list(table.frame.columns)
            labels = labels_of(records, spec.target)
            train = training_arrays(table.frame, labels, chosen.value.train_ids)
            test = candidate_arrays(table.frame, labels, chosen.value.test_ids)
            train_groups = [groups[i] for i in train[0]] if groups else None
            fitted = traced(fit_and_evaluate)(
                spec,
                columns,
                train,
                test,
                split_spec.seed,
                train_groups,
                model_featurization(featurization_spec),
                dask_address,
            )
            trained, record, evaluation = (
                fitted.value.model,
                fitted.value.record,
                fitted.value.evaluation,
            )
            model_id, prediction_id = recorder.model(
                trained, record, evaluation.metrics, fitted.run, split_id, features_id
            )
            document = {
                "run_id": recorder.run_id,
                "target": spec.target,
                "unit": unit,
                "kind": spec.kind,
                "algorithm": spec.algorithm,
                "split": {
                    "method": split_spec.method,
                    "seed": split_spec.seed,
                    "test_fraction": split_spec.test_fraction,
                    "n_train": len(train[0]),
                    "n_test": len(test[0]),
                    "n_groups": chosen.value.n_groups,
                },
                "held_out": evaluation.metrics,
                "baselines": evaluation.baselines,
                "cross_validation": trained.cv_metrics,
                "search": trained.search,
                "featurization": {
                    "preset": featurization_spec.preset,
                    "chosen_because": featurization_spec.chosen_because,
                    "n_features": len(columns),
                    "structures_from_store": reused,
                    "failures": len(table.failures),
                },
            }
            files = _write_model_folder(out, trained, evaluation, document, path, len(records))
            if spec.kind == "regressor":
                # The labelled phases, for hull distances of later predictions (meaningful
                # when the label is a formation energy per atom).
                formulas = {r.id: r.formula for r in records}
                phases = pd.DataFrame(
                    {"formula": [formulas[i] for i in train[0]], "label": train[2]}
                )
                files["phases"] = _write(out / PHASES_FILE, phases.to_csv(index=False))
            files["provenance"] = _write(
                out / "provenance.json",
                json.dumps(
                    {
                        "run_id": recorder.run_id,
                        "model_id": model_id,
                        "prediction_set_id": prediction_id,
                        "catalog": settings.catalog_url_for_display,
                    },
                    indent=2,
                ),
            )
    return {
        "run_id": recorder.run_id,
        "out_dir": str(out.resolve()),
        "metrics": document,
        "files": files,
    }


def _write_model_folder(
    out: Path,
    trained: SurrogateModel,
    evaluation: Any,
    document: dict[str, Any],
    source: Path,
    n_rows: int,
) -> dict[str, str]:
    import pandas as pd

    from matscreen.tasks.hashing import file_sha256
    from matscreen.tasks.models.interpret import model_card, parity_plot, residual_plot
    from matscreen.tasks.models.metrics import json_safe

    out.mkdir(parents=True, exist_ok=True)
    predicted, y_true = evaluation.predictions, evaluation.y_true
    unit = document["unit"]
    held_out = pd.DataFrame(
        {
            "id": predicted.ids,
            "label": y_true,
            "prediction": predicted.prediction,
            "lower": predicted.lower,
            "upper": predicted.upper,
        }
    )
    card = model_card(
        trained,
        {
            "source": str(source.resolve()),
            "sha256": file_sha256(source),
            "n_rows": n_rows,
            "unit": unit,
            "featurization": f"preset {document['featurization']['preset']}"
            + (f" ({because})" if (because := document["featurization"]["chosen_because"]) else ""),
        },
        document["split"],
        document["held_out"],
        document["baselines"],
        evaluation.importance,
    )
    files = {
        "model": _write(out / MODEL_FILE, trained.model_json),
        "metrics": _write(
            out / "metrics.json", json.dumps(json_safe(document), indent=2, sort_keys=True)
        ),
        "card": _write(out / "card.md", card),
        "held_out": _write(out / "held_out.csv", held_out.to_csv(index=False)),
        "importance": _write(
            out / "importance.csv", pd.DataFrame(evaluation.importance).to_csv(index=False)
        ),
    }
    if not trained.is_classifier and len(y_true):
        files["parity"] = _write(
            out / "parity.png",
            parity_plot(
                trained.target, unit, y_true, predicted.prediction, predicted.lower, predicted.upper
            ),
        )
        files["residuals"] = _write(
            out / "residuals.png",
            residual_plot(trained.target, unit, y_true, predicted.prediction),
        )
    return files


def load_model_folder(model_dir: Path) -> tuple[SurrogateModel, dict[str, Any]]:
    """The model of a folder written by ``train`` and its provenance (may be empty).

    Raises
    ------
    ModelError
        If the folder or its model file is missing, or the model cannot be loaded here
        (format, library versions; see :meth:`SurrogateModel.from_json`).
    """
    from matscreen.tasks.models.surrogate import SurrogateModel

    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {MODEL_FILE} (not a model folder written by train)")
    model = SurrogateModel.from_json(path.read_bytes(), str(path))
    if model.featurization is None:
        raise ModelError(f"{path}: the model does not say how its features were computed")
    provenance_path = model_dir / "provenance.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
    return model, provenance


def _featurization_of(model: SurrogateModel, where: str) -> FeaturizationSpec:
    from pydantic import ValidationError

    from matscreen.tasks.featurize import featurization_config

    assert model.featurization is not None
    try:
        spec = FeaturizationSpec.model_validate(model.featurization["spec"])
    except ValidationError as exc:
        raise ModelError(f"{where}: featurization not usable here: {describe_errors(exc)}") from exc
    now = featurization_config(spec)["featurizers"]
    if now != model.featurization["config"]["featurizers"]:
        raise ModelError(f"{where}: the featurizers of this matscreen differ from the model's")
    return spec


def predict_properties(
    model_dir: str,
    input_path: str,
    output_path: str,
    level: float | None = None,
    hull_references: str | None = None,
) -> dict[str, Any]:
    """Predict a stored model's target for the structures of a file; write a CSV.

    Runs as the Prefect flow ``predict-properties`` (``as_flow(predict_properties)``).
    With ``hull_references`` (elemental reference entries) a formation-energy model's
    predictions also become distances to the convex hull of those references and the
    model's training phases: ``hull_distance``, ``hull_lower``, ``hull_upper`` (eV/atom).

    Returns
    -------
    dict
        ``run_id``, ``output``, ``n_rows`` written and ``skipped`` (ids of rows that could
        not be read or featurized, with why).

    Raises
    ------
    ModelError
        If the model cannot be loaded, its featurization is not available, or the computed
        feature labels differ from the model's.
    """
    import numpy as np

    from matscreen.catalog import Catalog
    from matscreen.flows.featurize import featurize_and_record
    from matscreen.tasks.dataset import feature_failures
    from matscreen.tasks.files import write_atomically
    from matscreen.tasks.models.surrogate import predict_surrogate
    from matscreen.tasks.runinfo import traced

    settings = Settings()
    trained, provenance = load_model_folder(Path(model_dir))
    featurization_spec = _featurization_of(trained, model_dir)
    path = Path(input_path)
    parameters = {"model_dir": str(Path(model_dir).resolve()), "input": str(path.resolve())}
    with Catalog(settings.catalog_url) as catalog:
        recorder = _recorder(catalog, settings, "predict-properties", parameters)
        with recorder.running(), rare_collections():
            records, record_ids, failures, _ = _read_records(
                path, recorder, settings, None, keep_duplicates=True
            )
            unique = [r for r in records if r.duplicate_of is None]
            table, features_id, _ = featurize_and_record(
                unique, featurization_spec, settings, recorder, record_ids
            )
            featurize_failures = feature_failures(unique, table)
            # A repeated structure takes the features of its first record.
            rows = {r.id: r.duplicate_of or r.id for r in records}
            ids = [i for i, row in rows.items() if row in table.frame.index]
            x = table.frame.loc[[rows[i] for i in ids]].to_numpy(dtype=np.float64)
            predicted = traced(predict_surrogate)(trained, ids, x, list(table.frame.columns), level)
            frame = predictions_frame(predicted.value, records)
            if hull_references is not None:
                add_hull_distances(frame, predicted.value.ids, records, hull_references, model_dir)
            write_atomically(Path(output_path), frame.to_csv(index=False).encode())
            recorder.applied_model(
                trained,
                frame.set_index("id"),
                predicted.run,
                features_id,
                provenance.get("model_id"),
            )
    skipped = {f.id: f.message for f in [*failures, *featurize_failures]}
    return {
        "run_id": recorder.run_id,
        "output": str(Path(output_path).resolve()),
        "n_rows": len(frame),
        "skipped": skipped,
    }


def add_hull_distances(
    frame: pd.DataFrame,
    ids: list[str],
    records: list[Any],
    references_path: str,
    model_dir: str,
) -> None:
    """Add hull distances of the predicted formation energies (and their intervals)."""
    import pandas as pd

    from matscreen.tasks.models.stability import hull_formation_energies, load_reference_entries

    references = load_reference_entries(Path(references_path))
    phases_path = Path(model_dir) / PHASES_FILE
    known = []
    if phases_path.is_file():
        phases = pd.read_csv(phases_path)
        known = list(zip(phases["formula"], phases["label"], strict=True))
    formulas = {r.id: r.formula for r in records}
    hull = hull_formation_energies([(i, formulas[i]) for i in ids], references, known)
    energies = [hull[i] for i in ids]
    frame["hull_distance"] = frame["prediction"] - energies
    frame["hull_lower"] = frame["lower"] - energies
    frame["hull_upper"] = frame["upper"] - energies


def predictions_frame(predicted: Any, records: list[Any]) -> pd.DataFrame:
    """The output table: the input's own id, prediction, lower, upper (and probability)."""
    import pandas as pd

    own_id = {r.id: r.source_id for r in records}
    frame = pd.DataFrame(
        {
            "id": [own_id[i] for i in predicted.ids],
            "prediction": predicted.prediction,
            "lower": predicted.lower,
            "upper": predicted.upper,
        }
    )
    if predicted.probability is not None:
        frame["probability"] = predicted.probability
    return frame


# -- command line -------------------------------------------------------------------------------


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
    """A function of this module as a Prefect flow named after it (``train-model``).

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


def _number(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


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
        print(f"  {name:<28}" + "".join(f"{_number(metrics.get(n)):>10}" for n in names))
    if "coverage" in held:
        print(
            f"  {held['level']:.0%} intervals: held-out coverage {_number(held['coverage'])}, "
            f"mean width {_number(held['mean_width'])}"
        )


def _predict(args: argparse.Namespace) -> int:
    model, _ = load_model_folder(args.model)  # fails here, before any work
    _featurization_of(model, str(args.model))
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
