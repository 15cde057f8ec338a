"""Stored models: save, load, identical predictions; mismatches refused with ModelError."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost

from matscreen.tasks.errors import ModelError
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.surrogate import SurrogateModel
from matscreen.tasks.models.training import train_surrogate
from matscreen.tasks.spec import ModelSpec
from matscreen.tasks.versions import installed_version

LABELS = ["MagpieData mean Number", "density", "vpa", "spacegroup_num"]


def _data(n: int, seed: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    x[rng.random(size=(n, 4)) < 0.05] = np.nan  # missing features travel through the pipeline
    y = np.where(np.nan_to_num(x[:, 0]) > 0.3, 1.0 + np.abs(np.nan_to_num(x[:, 1])), 0.0)
    return [f"m{i}" for i in range(n)], x, y


CASES = [
    ModelSpec(target="gap", params={"n_estimators": 30}, clip_min=0.0),
    ModelSpec(target="gap", kind="two_stage_gap", params={"n_estimators": 30}, clip_min=0.0),
    ModelSpec(target="gap", kind="classifier", positive_at_most=0.0, params={"n_estimators": 30}),
    ModelSpec(target="gap", algorithm="random_forest", params={"n_estimators": 20}, scale=True),
    ModelSpec(target="gap", algorithm="kernel_ridge", select_features=3),
    ModelSpec(
        target="gap", algorithm="gradient_boosting", kind="two_stage_gap", params={"max_iter": 30}
    ),
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: f"{s.algorithm}-{s.kind}")
def test_saved_model_predicts_identically_after_loading(spec: ModelSpec, tmp_path) -> None:
    if spec.algorithm != "xgboost":
        pytest.importorskip("skops", reason="scikit-learn models are stored with skops")
    ids, x, y = _data(300, seed=1)
    test_ids, x_test, _ = _data(120, seed=2)
    model = train_surrogate(spec, LABELS, (ids, x, y), seed=0)
    before = predict_surrogate(model, test_ids, x_test, LABELS)
    path = tmp_path / "model.json"
    path.write_bytes(model.model_json)
    loaded = SurrogateModel.from_json(path.read_bytes(), str(path))
    after = predict_surrogate(loaded, test_ids, x_test, LABELS)
    np.testing.assert_array_equal(after.prediction, before.prediction)
    np.testing.assert_array_equal(after.lower, before.lower)
    np.testing.assert_array_equal(after.upper, before.upper)
    if before.probability is not None:
        np.testing.assert_array_equal(after.probability, before.probability)
    assert loaded.feature_labels == LABELS and loaded.train_ids == ids
    document = json.loads(path.read_bytes())
    stored = document["estimator"]
    if spec.kind == "two_stage_gap":
        stored = stored["regressor"]
    if spec.algorithm == "xgboost":
        # The estimator is xgboost's own JSON format, readable by xgboost alone.
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(json.dumps(stored["model"]["model"]).encode()))
        assert booster.num_boosted_rounds() == 30
    else:
        assert stored["model"]["type"] == "skops"


def test_mismatched_feature_labels_are_refused() -> None:
    ids, x, y = _data(100, seed=3)
    model = train_surrogate(
        ModelSpec(target="gap", params={"n_estimators": 10}), LABELS, (ids, x, y), 0
    )
    renamed = [*LABELS[:3], "spacegroup number"]
    with pytest.raises(
        ModelError, match=r"missing \['spacegroup_num'\], unexpected \['spacegroup number'\]"
    ):
        predict_surrogate(model, ids, x, renamed)
    with pytest.raises(ModelError, match="same labels in another order"):
        predict_surrogate(model, ids, x[:, ::-1], LABELS[::-1])
    with pytest.raises(ModelError, match="fitted on 4 features, got 3"):
        predict_surrogate(model, ids, x[:, :3], LABELS[:3])


def test_other_library_version_or_format_is_refused(tmp_path) -> None:
    ids, x, y = _data(100, seed=4)
    model = train_surrogate(
        ModelSpec(target="gap", params={"n_estimators": 10}), LABELS, (ids, x, y), 0
    )
    document = model.to_document()
    # A real version, whichever distribution (xgboost or xgboost-cpu) installed the package.
    assert document["versions"]["xgboost"] == installed_version("xgboost") == xgboost.__version__
    older = json.dumps({**document, "versions": {**document["versions"], "xgboost": "1.7.6"}})
    with pytest.raises(
        ModelError, match=r"m\.json: fitted with xgboost 1\.7\.6, but xgboost .* installed"
    ):
        SurrogateModel.from_json(older, "m.json")
    with pytest.raises(ModelError, match="model format version 99"):
        SurrogateModel.from_json(json.dumps({**document, "format_version": 99}), "m.json")
    with pytest.raises(ModelError, match="not a matscreen model"):
        SurrogateModel.from_json(json.dumps({"learner": {}}), "m.json")
    with pytest.raises(ModelError, match="not a JSON document"):
        SurrogateModel.from_json(b"\x00binary", "m.json")


def test_skops_file_with_untrusted_types_is_refused() -> None:
    pytest.importorskip("skops", reason="scikit-learn models are stored with skops")
    import base64

    import skops.io

    from matscreen.tasks.models.serialize import estimator_from_dict

    class Smuggled:
        pass

    state = {
        "type": "pipeline",
        "preprocess": {},
        "model": {
            "type": "skops",
            "class": "Smuggled",
            "data": base64.b64encode(skops.io.dumps({"payload": Smuggled()})).decode(),
        },
    }
    with pytest.raises(ModelError, match="holds types matscreen does not load"):
        estimator_from_dict(state)
