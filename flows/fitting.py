"""The training step of both the campaign and ``matscreen train``: split, featurize, fit.

:func:`split_and_featurize` chooses the held-out part of the labelled records and featurizes
them (with any other records to featurize alongside) through the feature store;
:func:`fit_models` then fits every model on the training part, or reuses an earlier fit of
the same training set, spec and software, and scores it on the held-out part. Each step is
recorded in the catalog as it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefect.futures import PrefectFuture
from prefect.utilities.annotations import opaque

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.queries import models_trained_as
from matscreen.catalog.scores import ScoreCache
from matscreen.flows.featurize import featurize_and_record, model_featurization
from matscreen.tasks.dataset import candidate_arrays, training_arrays
from matscreen.tasks.featurize.batch import FeatureTable
from matscreen.tasks.models.evaluation import (
    FittedSurrogate,
    reusable_model,
    scores_key,
    training_fingerprint,
)
from matscreen.tasks.runinfo import StepTimer
from matscreen.tasks.sources.records import StructureRecord
from matscreen.tasks.spec import FeaturizationSpec, ModelSpec, SplitSpec
from matscreen.tasks.split import DataSplit, record_groups
from matscreen.tasks.steps import choose_split_task, evaluate_model_task, fit_surrogate_task


@dataclass(frozen=True)
class Prepared:
    """The labelled records split, and the records featurized.

    Attributes
    ----------
    split
        The training and held-out ids.
    groups
        ``{record id: group key}`` for a grouped split, else None.
    split_id, features_id
        The split's and the feature table's catalog entities.
    table
        The features of every record that featurized.
    from_store
        Structures whose features the feature store held.
    """

    split: DataSplit
    groups: dict[str, str] | None
    split_id: str
    table: FeatureTable
    features_id: str
    from_store: int

    def arrays(
        self, labels: dict[str, float | None]
    ) -> tuple[tuple[list[str], Any, Any], tuple[list[str], Any, Any]]:
        """``(ids, features, labels)`` of the training rows with a label, and of every
        held-out row."""
        train = training_arrays(self.table.frame, labels, self.split.train_ids)
        test = candidate_arrays(self.table.frame, labels, self.split.test_ids)
        return train, test


@dataclass(frozen=True)
class Fitted:
    """The models of one training step.

    Attributes
    ----------
    models
        The fitted (or reused) surrogate of each target, with its held-out predictions.
    stored
        ``(model id, held-out prediction set id)`` of each model, in the order given.
    reused
        ``{target: earlier model id}`` of the models reused rather than fitted.
    """

    models: dict[str, FittedSurrogate]
    stored: list[tuple[str, str]]
    reused: dict[str, str]


def split_and_featurize(
    labelled: list[StructureRecord],
    records: list[StructureRecord],
    split_spec: SplitSpec,
    featurization: FeaturizationSpec,
    settings: Any,
    recorder: Any,
    record_ids: dict[str, str],
    snapshot_ids: list[str],
    timer: StepTimer | None = None,
) -> Prepared:
    """Split ``labelled``, then featurize ``records`` (which hold ``labelled``).

    Parameters
    ----------
    settings, recorder
        The run's :class:`~matscreen.flows.settings.Settings` and recorder.
    record_ids
        ``{record id: catalog entity id}`` of every record.
    snapshot_ids
        The source snapshots the records come from, which the split is derived from.
    timer
        Times the ``split`` and ``featurize`` steps.

    Raises
    ------
    SplitError
        If the records cannot be split as ``split_spec`` asks.
    """
    timer = timer or StepTimer()
    with timer.step("split"):
        groups = record_groups(labelled, split_spec.method)
        chosen = choose_split_task(opaque([r.id for r in labelled]), split_spec, opaque(groups))
        split_id = recorder.split(chosen.value, chosen.run, snapshot_ids)
    with timer.step("featurize"):
        table, features_id, from_store = featurize_and_record(
            records, featurization, settings, recorder, record_ids
        )
    return Prepared(chosen.value, groups, split_id, table, features_id, from_store)


def fit_models(
    models: Sequence[ModelSpec],
    prepared: Prepared,
    labels: dict[str, dict[str, float | None]],
    seed: int,
    featurization: FeaturizationSpec,
    catalog: Catalog,
    artifacts: ArtifactStore,
    recorder: Any,
    scores: ScoreCache,
    dask_address: str | None = None,
) -> Fitted:
    """Fit (or reuse) every model on the training part and score it on the held-out part.

    A model whose training fingerprint (features, training rows, spec, seed, software)
    matches a stored model with an intact artifact is reused and only scored again; its
    baselines, importance and calibration curve are taken from ``scores`` when an earlier
    run kept them for the same model, rows and scoring code. Every model's are kept there.

    Parameters
    ----------
    labels
        ``{target: {record id: label}}``.
    seed
        The split's seed, which also seeds the fits.
    dask_address
        A Dask scheduler for the fits of each model's hyperparameter search: the model is
        then fitted in this process. Without one, every model is fitted as a task of the
        flow's task runner, all at once.

    Raises
    ------
    ModelError
        If too few rows featurize, or a fit fails.
    """
    columns = list(prepared.table.frame.columns)
    saved_featurization = model_featurization(featurization)
    pending: list[PrefectFuture[Any] | Any] = []
    fingerprints: dict[str, str] = {}
    reused: dict[str, str] = {}
    keys: dict[str, str | None] = {}  # of the held-out scores of reused models
    kept: dict[str, bool] = {}
    rows: dict[str, Any] = {}
    for model in models:
        train, test = prepared.arrays(labels[model.target])
        rows[model.target] = (train, test)
        groups = prepared.groups
        train_groups = [groups[i] for i in train[0]] if groups else None
        fingerprint = training_fingerprint(
            model, columns, train, seed, train_groups, saved_featurization
        )
        fingerprints[model.target] = fingerprint
        earlier = reusable_model(models_trained_as(catalog, fingerprint), artifacts.get_bytes)
        arrays = (opaque(columns), opaque(train), opaque(test), seed)
        if earlier is not None:
            # The same training set, spec and software: the stored fit is reused.
            model_id, artifact, stored_model = earlier
            reused[model.target] = model_id
            keys[model.target] = scores_key(artifact, columns, train, test, seed)
            taken = scores.get(keys[model.target])
            kept[model.target] = taken is not None
            pending.append(
                evaluate_model_task.submit(opaque(stored_model), *arrays, scores=opaque(taken))
            )
        elif dask_address:
            pending.append(
                fit_surrogate_task(
                    model, *arrays, opaque(train_groups), saved_featurization, dask_address
                )
            )
        else:
            pending.append(
                fit_surrogate_task.submit(model, *arrays, opaque(train_groups), saved_featurization)
            )
    fits = [p.result() if isinstance(p, PrefectFuture) else p for p in pending]
    stored = [
        recorder.model(
            f.value.model,
            f.value.record,
            f.value.evaluation.metrics,
            f.run,
            prepared.split_id,
            prepared.features_id,
            fingerprints[f.value.model.target],
            reused=f.value.model.target in reused,
            kept_scores=keys[f.value.model.target] if kept.get(f.value.model.target) else None,
        )
        for f in fits
    ]
    for f, (model_id, _) in zip(fits, stored, strict=True):
        target = f.value.model.target
        if kept.get(target):
            continue
        if target not in keys:  # fitted now: keyed by the artifact just stored
            artifact = catalog.get_entity(model_id).attributes["artifact_sha256"]
            train, test = rows[target]
            keys[target] = scores_key(artifact, columns, train, test, seed)
        scores.put(keys[target], f.value.evaluation.scores)
    return Fitted({f.value.model.target: f.value for f in fits}, stored, reused)
