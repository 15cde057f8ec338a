"""Hostile model settings and featurizations are refused when the spec loads.

An estimator parameter that does not exist, or a value the estimator would reject or
silently misuse (a negative tree count, a fractional depth), used to pass the spec and
surface minutes later as a library warning or a model worse than the dummy; a featurizer
repeating the preset's columns failed only at featurization. Each is now a SpecError
naming the key path, raised by ``load_spec`` and by ``matscreen train``.
"""

from __future__ import annotations

import csv
import importlib
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from matscreen.flows.cli import DEFAULT_SPEC
from matscreen.flows.settings import REPOSITORY_ROOT
from matscreen.tasks.errors import SpecError
from matscreen.tasks.models.params import SKLEARN_ESTIMATORS, check_params
from matscreen.tasks.models.pipeline import (
    DEFAULT_PARAMS,
    DEFAULT_SEARCH_SPACES,
    build_estimator,
)
from matscreen.tasks.spec import MODEL_ALGORITHMS, ModelSpec, load_spec

SITE = "matscreen.tasks.featurize.site_resolved.CoordinationElementProperty"


@pytest.fixture()
def demo() -> dict[str, Any]:
    """The demo campaign's spec as data, to be spoiled one key at a time."""
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def _load(tmp_path: Path, data_dir: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path, data_dir)


def _refused(tmp_path: Path, data_dir: Path, data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        _load(tmp_path, data_dir, data)
    return str(caught.value)


@pytest.mark.parametrize(
    ("value", "shown"), [(-3, "-3"), (0, "0"), (2.5, "2.5"), ("many", "'many'"), (True, "True")]
)
def test_xgboost_tree_count_must_be_a_positive_int(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any], value: Any, shown: str
) -> None:
    demo["models"][0]["params"] = {"n_estimators": value, "max_depth": 6}
    message = _refused(tmp_path, data_dir, demo)
    assert message.endswith(
        f"models.0.params.n_estimators: {shown} is not valid: must be an int in the range [1, inf)"
    ), message
    assert message.startswith(f"campaign spec {tmp_path / 'spec.yaml'}: ")


@pytest.mark.parametrize("algorithm", ["xgboost", "random_forest"])
def test_misspelt_parameter_is_refused_with_the_closest_name(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any], algorithm: str
) -> None:
    demo["models"][1].update(algorithm=algorithm, params={"n_estimator": 300})
    message = _refused(tmp_path, data_dir, demo)
    assert message.endswith(
        f"models.1.params.n_estimator: unknown parameter of {algorithm}; "
        "did you mean 'n_estimators'?"
    ), message


def test_unknown_parameter_without_a_close_name_lists_the_known_ones(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo["models"][0]["params"] = {"colour": "blue"}
    message = _refused(tmp_path, data_dir, demo)
    known = re.search(
        r"models\.0\.params\.colour: unknown parameter of xgboost \(known: (.*)\)$", message
    )
    assert known is not None, message
    names = known.group(1).split(", ")
    assert names == sorted(names) and {"n_estimators", "max_depth", "subsample"} <= set(names)
    assert "random_state" not in names  # matscreen sets it from split.seed


def test_random_forest_depth_and_kernel_ridge_alpha_follow_scikit_learn(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo["models"][0].update(algorithm="random_forest", params={"max_depth": -1})
    demo["models"][1].update(algorithm="kernel_ridge", kind="regressor", params={"alpha": -0.5})
    message = _refused(tmp_path, data_dir, demo)
    # scikit-learn's own constraints, in its words; both models' errors in one message.
    assert (
        "models.0.params.max_depth: -1 is not valid: must be an int in the range [1, inf) or None"
        in message
    ), message
    assert "models.1.params.alpha: -0.5 is not valid: must be a float in the range [0.0, inf)" in (
        message
    )


def test_every_search_space_value_is_checked(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo["models"][0].update(search="random", search_space={"max_depth": [3, 6, -1]})
    message = _refused(tmp_path, data_dir, demo)
    assert message.endswith(
        "models.0.search_space.max_depth.2: -1 is not valid: must be an int in the range [0, inf)"
    ), message
    demo["models"][0]["search_space"] = {"learning_rate": [0.05, 0.0]}
    assert "models.0.search_space.learning_rate.1: 0.0 is not valid" in _refused(
        tmp_path, data_dir, demo
    )
    demo["models"][0]["search_space"] = {"max_dept": [3, 6]}
    assert "models.0.search_space.max_dept: unknown parameter of xgboost; did you mean " in (
        _refused(tmp_path, data_dir, demo)
    )


def test_parameters_matscreen_sets_itself_are_refused(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo["models"][0]["params"] = {"random_state": 7}
    assert _refused(tmp_path, data_dir, demo).endswith(
        "models.0.params.random_state: set by matscreen from split.seed; remove it"
    )


def test_two_stage_values_are_checked_for_both_stages(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    band_gap = demo["models"][1]
    assert band_gap["kind"] == "two_stage_gap"
    band_gap.update(algorithm="random_forest", params={"criterion": "gini"})
    message = _refused(tmp_path, data_dir, demo)
    assert "models.1.params.criterion: 'gini' is not valid for the regressor stage" in message
    band_gap["params"] = {"classifier__criterion": "gini", "regressor__max_depth": 8}
    assert _load(tmp_path, data_dir, demo).models[1].params["classifier__criterion"] == "gini"
    band_gap["algorithm"] = "kernel_ridge"
    band_gap["params"] = {}
    assert "kernel_ridge cannot be a classifier" in _refused(tmp_path, data_dir, demo)


@pytest.mark.parametrize("algorithm", MODEL_ALGORITHMS)
@pytest.mark.parametrize("kind", ["regressor", "classifier", "two_stage_gap"])
def test_matscreens_own_defaults_and_search_spaces_pass(algorithm: str, kind: str) -> None:
    if algorithm == "kernel_ridge" and kind != "regressor":
        pytest.skip("kernel ridge is a regressor only")
    check_params(algorithm, kind, DEFAULT_PARAMS[algorithm])
    if algorithm == "gaussian_process" and kind != "regressor":
        # The default space tunes alpha, which GaussianProcessClassifier does not have: a
        # search would fail at its first fit, so the spec is refused unless it gives a space.
        why = {
            "classifier": "a parameter of the gaussian_process regressor, not of its classifier",
            "two_stage_gap": "not a parameter of the classifier stage; write regressor__alpha",
        }[kind]
        with pytest.raises(ValueError, match=re.escape(f"search_space.alpha: {why}")):
            check_params(algorithm, kind, {}, DEFAULT_SEARCH_SPACES[algorithm])
        spec = {"target": "y", "algorithm": algorithm, "kind": kind, "search": "random"}
        with pytest.raises(ValidationError, match=r"the default space of gaussian_process"):
            ModelSpec.model_validate(spec)
        ModelSpec.model_validate({**spec, "search_space": {"n_restarts_optimizer": [0, 2]}})
    else:
        check_params(algorithm, kind, {}, DEFAULT_SEARCH_SPACES[algorithm])


@pytest.mark.parametrize(("key", "path"), sorted(SKLEARN_ESTIMATORS.items()))
def test_parameters_are_checked_against_the_estimator_matscreen_builds(
    key: tuple[str, bool], path: str
) -> None:
    algorithm, classify = key
    module_name, _, class_name = path.rpartition(".")
    checked = getattr(importlib.import_module(module_name), class_name)
    assert type(build_estimator(algorithm, classify, {}, seed=0)) is checked


@pytest.mark.parametrize(
    "example", sorted((REPOSITORY_ROOT / "deploy" / "campaigns").glob("*.yaml")), ids=str
)
def test_example_campaigns_still_load(example: Path, data_dir: Path) -> None:
    spec = load_spec(example, data_dir)
    assert spec.featurization.preset in ("sites", "relaxed") and spec.featurization.chosen_because


def test_featurizer_repeating_the_presets_columns_is_refused(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo["featurization"] = {
        "preset": "structure",
        "featurizers": [{"input": "structure", "cls": SITE}],
    }
    message = _refused(tmp_path, data_dir, demo)
    found = re.search(
        r"featurization\.featurizers\.0: "
        + re.escape(SITE)
        + r" repeats (\d+) feature labels of the preset 'structure' "
        r"\(CoordinationElementProperty, e\.g\. '([^']+)'\); drop it or use preset: null$",
        message,
    )
    assert found is not None, message
    from matscreen.tasks.featurize.site_resolved import CoordinationElementProperty

    labels = CoordinationElementProperty().feature_labels()
    assert int(found.group(1)) == len(labels) and found.group(2) in labels
    # The same featurizer on its own, or after the fast preset, is fine.
    demo["featurization"]["preset"] = None
    assert _load(tmp_path, data_dir, demo).featurization.featurizers[0].cls == SITE
    demo["featurization"]["preset"] = "fast"
    assert _load(tmp_path, data_dir, demo).featurization.preset == "fast"


def test_featurizer_that_cannot_be_built_is_refused(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    demo.setdefault("featurization", {})["featurizers"] = [
        {"input": "structure", "cls": SITE, "kwargs": {"coordination": "crystalnn"}},
        {"input": "structure", "cls": SITE, "kwargs": {"colour": "blue"}},
    ]
    message = _refused(tmp_path, data_dir, demo)
    assert f"featurization.featurizers.1: cannot build {SITE} from {{'colour': 'blue'}}" in message
    assert "featurizers.0" not in message


def test_featurizer_known_only_after_fitting_is_not_refused(
    tmp_path: Path, data_dir: Path, demo: dict[str, Any]
) -> None:
    # BagofBonds learns its bond types in fit(): its labels cannot be compared beforehand.
    bag = {"input": "structure", "cls": "matminer.featurizers.structure.BagofBonds"}
    demo.setdefault("featurization", {})["featurizers"] = [bag]
    assert _load(tmp_path, data_dir, demo).featurization.featurizers[0].cls == bag["cls"]


def test_train_command_refuses_a_bad_param_at_once(
    perovskite_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from matscreen.flows.cli import main

    with open(perovskite_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))[:30]
    good = tmp_path / "train.csv"
    with open(good, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif", "heat_ref"])
        writer.writerows([r["material_id"], r["cif"], r["heat_ref"]] for r in rows)
    argv = ["train", "--input", str(good), "--target", "heat_ref", "--out", str(tmp_path / "m")]

    assert main([*argv, "--param", "n_estimators=-3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "matscreen: error: train options: params.n_estimators: -3 is not valid: "
        "must be an int in the range [1, inf)\n"
    )
    assert main([*argv, "--algorithm", "random_forest", "--param", "n_estimator=5"]) == 2
    assert "params.n_estimator: unknown parameter of random_forest; did you mean" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "m").exists()
