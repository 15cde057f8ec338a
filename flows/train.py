"""Train a surrogate on a file of structures and labels, or apply one to new structures.

``matscreen train --input FILE --target COLUMN [--preset NAME] [--out DIR]`` reads the
structures and labels, chooses the held-out rows, featurizes (through the feature store),
fits with cross-validation and conformal calibration on the training rows, scores the
held-out rows next to the baselines and writes the model folder. Those steps are the
campaign's own (:mod:`matscreen.flows.fitting`): a model of the same training rows, spec and
software as one in the catalog is reused and scored again, not fitted again.

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

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matscreen.flows.heap import rare_collections
from matscreen.flows.settings import Settings
from matscreen.tasks.errors import InputError, ModelError
from matscreen.tasks.spec import (
    FeaturizationSpec,
    ModelSpec,
    SplitSpec,
    describe_errors,
)

if TYPE_CHECKING:  # the flows' own imports load Prefect, Dask and scikit-learn when they run
    import pandas as pd

    from matscreen.catalog.prediction_recorder import PredictionRecorder
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

    Runs as the Prefect flow ``train-model`` (:func:`matscreen.flows.cli.train.as_flow`;
    the featurization maps Prefect tasks on the flow's task runner).

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
    SplitError
        If the records cannot be split as ``split`` asks.
    ModelError
        If too few rows featurize, or the fit fails.
    """
    import pandas as pd

    from matscreen.catalog import Catalog
    from matscreen.catalog.prediction_recorder import PredictionRecorder
    from matscreen.catalog.scores import ScoreCache
    from matscreen.flows.fitting import fit_models, split_and_featurize
    from matscreen.flows.runtime import run_recorder
    from matscreen.tasks.dataset import labels_of
    from matscreen.tasks.featurize import featurization_config

    settings = Settings()
    spec = ModelSpec.model_validate(model)
    split_spec = SplitSpec.model_validate(split)
    featurization_spec = FeaturizationSpec.model_validate(featurization)
    # Resolving the featurizers refuses an unknown one before the input is read.
    featurization_config(featurization_spec)
    path, out = Path(input_path), Path(out_dir)
    parameters = {"input": str(path.resolve()), "out_dir": str(out.resolve()), "model": model}
    with Catalog(settings.catalog_url) as catalog:
        recorder = run_recorder(catalog, settings, "train-model", parameters, PredictionRecorder)
        with recorder.running(), rare_collections():
            records, record_ids, failures, snapshots = _read_records(
                path, recorder, settings, spec.target
            )
            if failures:
                shown = "; ".join(f.message for f in failures[:5])
                raise InputError(
                    f"{path}: {len(failures)} rows cannot be used for training: {shown}"
                )
            prepared = split_and_featurize(
                records,
                records,
                split_spec,
                featurization_spec,
                settings,
                recorder,
                record_ids,
                snapshots,
            )
            labels = labels_of(records, spec.target)
            fitted = fit_models(
                [spec],
                prepared,
                {spec.target: labels},
                split_spec.seed,
                featurization_spec,
                catalog,
                recorder.artifacts,
                recorder,
                ScoreCache(settings.score_dir),
                dask_address,
            )
            trained = fitted.models[spec.target].model
            evaluation = fitted.models[spec.target].evaluation
            [(model_id, prediction_id)] = fitted.stored
            train, test = prepared.arrays(labels)
            columns = list(prepared.table.frame.columns)
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
                    "n_groups": prepared.split.n_groups,
                },
                "held_out": evaluation.metrics,
                "baselines": evaluation.baselines,
                "cross_validation": trained.cv_metrics,
                "search": trained.search,
                # The catalog model this one is, when an identical earlier fit was reused.
                "reused_from": fitted.reused.get(spec.target),
                "featurization": {
                    "preset": featurization_spec.preset,
                    "chosen_because": featurization_spec.chosen_because,
                    "n_features": len(columns),
                    "structures_from_store": prepared.from_store,
                    "failures": len(prepared.table.failures),
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


def featurization_of(model: SurrogateModel, where: str) -> FeaturizationSpec:
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

    Runs as the Prefect flow ``predict-properties`` (:func:`matscreen.flows.cli.train.as_flow`).
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
    from matscreen.catalog.prediction_recorder import PredictionRecorder
    from matscreen.flows.featurize import featurize_and_record
    from matscreen.flows.runtime import run_recorder
    from matscreen.tasks.dataset import feature_failures
    from matscreen.tasks.files import write_atomically
    from matscreen.tasks.models.prediction import predict_surrogate
    from matscreen.tasks.runinfo import traced

    settings = Settings()
    trained, provenance = load_model_folder(Path(model_dir))
    featurization_spec = featurization_of(trained, model_dir)
    path = Path(input_path)
    parameters = {"model_dir": str(Path(model_dir).resolve()), "input": str(path.resolve())}
    with Catalog(settings.catalog_url) as catalog:
        recorder = run_recorder(
            catalog, settings, "predict-properties", parameters, PredictionRecorder
        )
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
