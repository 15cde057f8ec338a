"""Recording a stored model's predictions for new structures, and finding them again.

Kept apart from the campaign's steps (:mod:`~matscreen.catalog.recorder`): a campaign
records the predictions of the models it trains (``CampaignRecorder.model``); here a model
trained earlier, possibly recorded in another catalog, predicts structures it has never
seen, and a resumed screen reads back the predictions an earlier run of it recorded.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from matscreen.catalog.nodes import Edge, Entity
from matscreen.catalog.recorder import CampaignRecorder
from matscreen.tasks.errors import ArtifactError
from matscreen.tasks.runinfo import RunInfo
from matscreen.tasks.tables import parquet_to_frame


class PredictionRecorder(CampaignRecorder):
    """A recorder that can also record a stored model's predictions for new structures."""

    def applied_model(
        self,
        trained: Any,
        predictions: pd.DataFrame,
        run: RunInfo,
        features_id: str,
        model_id: str | None = None,
        scalars: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """Record the predictions of a stored model for new structures.

        Parameters
        ----------
        trained
            The model (target, algorithm, params, feature_labels, versions, ``model_json``).
        predictions
            One row per record id (index ``id``): prediction, lower, upper (and probability).
        run
            The prediction task's run.
        features_id
            The feature table the predictions read.
        model_id
            The model's entity id from training; when this catalog lacks it, the model is
            recorded here from its artifact.
        scalars
            The numbers of the predictions that are not per row (baseline, interval level
            …), kept with the set so that :meth:`stored_predictions` gives all of it back.

        Returns
        -------
        (model id, prediction set id)
        """
        from matscreen.tasks.errors import NotFoundError

        new: list[Entity] = []
        used = [features_id]
        if model_id is not None:
            try:
                self.catalog.get_entity(model_id)
            except NotFoundError:
                model_id = None
            else:
                used.append(model_id)
        if model_id is None:
            model = self._model_entity(
                trained, recorded_from="model artifact (trained outside this catalog)"
            )
            new.append(model)
            model_id = model.id
        prediction_sha = self._store_frame(predictions.astype("float64"))
        prediction_set = Entity.new(
            "prediction_set",
            f"{trained.target}:{prediction_sha[:12]}",
            {
                "target": trained.target,
                "n_rows": len(predictions),
                "columns": list(predictions.columns),
                "artifact_sha256": prediction_sha,
                "format": "parquet",
                **({"scalars": scalars} if scalars is not None else {}),
            },
        )
        self.catalog.record_step(
            self._activity(run, {"target": trained.target}),
            [*new, prediction_set],
            used=used,
            derived=[
                Edge("wasDerivedFrom", prediction_set.id, model_id),
                Edge("wasDerivedFrom", prediction_set.id, features_id),
            ],
        )
        return model_id, prediction_set.id

    def stored_predictions(
        self, model_id: str, features_id: str
    ) -> tuple[str, pd.DataFrame, dict[str, Any]] | None:
        """The predictions this model made from this feature table in an earlier run, if
        any were recorded with their scalars: ``(prediction set id, per-row table,
        scalars)``. A set whose table no longer reads back (missing, corrupt) is passed
        over, so the predictions are made and stored again."""
        from_features = {
            e.subject_id
            for e in self.catalog.edges(relation="wasDerivedFrom", object_id=features_id)
        }
        for entity in self.catalog.get_entities(sorted(from_features)):
            scalars = entity.attributes.get("scalars")
            if entity.kind != "prediction_set" or scalars is None:
                continue
            if not self.catalog.edges("wasDerivedFrom", entity.id, model_id):
                continue
            try:
                data = self.artifacts.get_bytes(entity.attributes["artifact_sha256"])
            except ArtifactError:
                continue
            return entity.id, parquet_to_frame(data), scalars
        return None
