"""``matscreen train`` and ``matscreen predict``: the command-line contract.

Bad input fails at once with a message naming the file, column or rows, before Prefect or
Dask start; a real train and predict on a subset of the perovskites writes the model
folder, exactly the promised prediction columns and the provenance in the catalog.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest


def run_cli(argv: list[str]) -> int:
    """The ``matscreen`` command, as a user runs it."""
    from matscreen.flows.cli import main

    return main(argv)


def write_input(
    source: Path, target: Path, rows: slice, labels: bool = True, ids: bool = True
) -> Path:
    """Real perovskites as a train/predict input: id, cif and (optionally) the labels."""
    with open(source, newline="") as handle:
        records = list(csv.DictReader(handle))[rows]
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        header = (["id"] if ids else []) + ["cif"] + (["heat_ref", "gap"] if labels else [])
        writer.writerow(header)
        for r in records:
            row = ([r["material_id"]] if ids else []) + [r["cif"]]
            if labels:
                row += [r["heat_ref"], max(float(r["dir_gap"]), float(r["ind_gap"]))]
            writer.writerow(row)
    return target


def as_json_lines(path: Path, target: Path) -> Path:
    """The same structures as JSON lines: an id and a pymatgen structure dict per line."""
    from pymatgen.io.cif import CifParser

    lines = []
    for row in pd.read_csv(path, dtype=str).itertuples():
        structure = CifParser.from_str(row.cif).parse_structures(primitive=False)[0]
        lines.append(json.dumps({"id": row.id, "structure": structure.as_dict()}))
    target.write_text("\n".join(lines) + "\n")
    return target


def rewrite(path: Path, column: str, values: dict[int, str]) -> Path:
    frame = pd.read_csv(path, dtype=str)
    for row, value in values.items():
        frame.loc[row, column] = value
    frame.to_csv(path, index=False)
    return path


def test_bad_training_input_is_refused_before_any_work(
    perovskite_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_input(perovskite_csv, tmp_path / "train.csv", slice(0, 30))

    def error(argv: list[str]) -> str:
        assert run_cli(argv) == 2
        return capsys.readouterr().err

    base = ["train", "--input", str(good), "--out", str(tmp_path / "m")]
    message = error([*base, "--target", "heat"])
    assert "target column 'heat' not found" in message and "'heat_ref'" in message
    nan = rewrite(
        write_input(perovskite_csv, tmp_path / "nan.csv", slice(0, 30)), "heat_ref", {2: ""}
    )
    message = error(["train", "--input", str(nan), "--target", "heat_ref"])
    assert "1 rows have no numeric 'heat_ref' label" in message
    ids = pd.read_csv(nan, dtype=str)["id"]
    assert f"{ids[2]}: empty" in message
    typed = rewrite(
        write_input(perovskite_csv, tmp_path / "typed.csv", slice(0, 30)),
        "heat_ref",
        {4: "stable", 9: "inf"},
    )
    message = error(["train", "--input", str(typed), "--target", "heat_ref"])
    assert "2 rows have no numeric 'heat_ref' label" in message
    assert f"{ids[4]}: 'stable'" in message and f"{ids[9]}: 'inf'" in message
    message = error([*base, "--target", "heat_ref", "--folds", "20"])
    assert "30 rows; at least 40 needed" in message
    message = error(["train", "--input", str(tmp_path / "missing.csv"), "--target", "gap"])
    assert "input file not found" in message and "missing.csv" in message
    no_cif = tmp_path / "no_cif.csv"
    pd.read_csv(good).drop(columns=["cif"]).to_csv(no_cif, index=False)
    assert "no 'cif' column" in error(["train", "--input", str(no_cif), "--target", "gap"])
    assert "interval_level" in error([*base, "--target", "gap", "--level", "1.5"])
    wrong_kind = tmp_path / "structures.txt"
    wrong_kind.write_text("x")
    assert "expected a .csv file" in error(["train", "--input", str(wrong_kind), "--target", "g"])
    # Each of these is an input error, not a model's.
    from matscreen.tasks.errors import InputError, ModelError
    from matscreen.tasks.models.inputs import check_input

    for path, target in ((typed, "heat_ref"), (tmp_path / "missing.csv", "gap"), (no_cif, "gap")):
        with pytest.raises(InputError) as raised:
            check_input(path, target)
        assert not isinstance(raised.value, ModelError)


def test_predict_refuses_a_folder_without_a_model(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    argv = ["predict", "--model", str(tmp_path / "empty"), "--input", "x.csv", "--output", "o.csv"]
    assert run_cli(argv) == 2
    assert "no model.json (not a model folder written by train)" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_predict_on_real_perovskites(
    prefect_server, data_dir: Path, perovskite_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    from matscreen.catalog import Catalog
    from matscreen.flows.settings import Settings
    from matscreen.tasks.models.inputs import input_source
    from matscreen.tasks.models.stability import hull_distances, load_reference_entries
    from matscreen.tasks.sources.base import read_source

    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "2")
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    monkeypatch.delenv("MATSCREEN_DASK_ADDRESS", raising=False)
    train = write_input(perovskite_csv, tmp_path / "train.csv", slice(0, 150))
    new = write_input(perovskite_csv, tmp_path / "new.csv", slice(150, 190), labels=False)
    new_jsonl = as_json_lines(new, tmp_path / "new.jsonl")
    # The same structure twice under two ids: both rows get a prediction.
    first = json.loads(new_jsonl.read_text().splitlines()[0])
    with open(new_jsonl, "a") as handle:
        handle.write(json.dumps({**first, "id": "copy-of-first"}) + "\n")
    out = tmp_path / "model"
    argv = ["train", "--input", str(train), "--target", "gap", "--out", str(out), "--unit", "eV"]
    argv += ["--kind", "two_stage_gap", "--clip-min", "0", "--folds", "3"]
    argv += ["--param", "n_estimators=40", "--seed", "3"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "Magpie + RF" in printed and "dummy (mean)" in printed and "coverage" in printed
    for name in ("model.json", "metrics.json", "card.md", "parity.png", "residuals.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    split = metrics["split"]
    assert split["n_train"] + split["n_test"] == 150
    held_out = pd.read_csv(out / "held_out.csv")
    assert len(held_out) == split["n_test"]
    assert metrics["held_out"]["mae"] == pytest.approx(
        (held_out["label"] - held_out["prediction"]).abs().mean()
    )
    assert metrics["held_out"]["coverage"] == pytest.approx(
        ((held_out["label"] >= held_out["lower"]) & (held_out["label"] <= held_out["upper"])).mean()
    )
    names = {b["name"] for b in metrics["baselines"]}
    assert names == {"dummy (mean)", "dummy (median)", "Magpie + RF"}
    card = (out / "card.md").read_text()
    assert "## Limitations" in card and f"{split['n_test']} held-out rows" in card
    assert (out / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    predictions = tmp_path / "predictions.csv"
    assert (
        run_cli(
            [
                "predict",
                "--model",
                str(out),
                "--input",
                str(new_jsonl),
                "--output",
                str(predictions),
            ]
        )
        == 0
    )
    frame = pd.read_csv(predictions, dtype={"id": str})
    # A two-stage gap model adds the probability of a gap to the four promised columns.
    assert list(frame.columns) == ["id", "prediction", "lower", "upper", "probability"]
    expected_ids = pd.read_csv(new, dtype=str)["id"].tolist() + ["copy-of-first"]
    assert sorted(frame["id"]) == sorted(expected_ids)
    by_id = frame.set_index("id")
    assert by_id.loc["copy-of-first"].equals(by_id.loc[first["id"]])
    assert (frame["lower"] <= frame["prediction"]).all()
    assert (frame["prediction"] <= frame["upper"]).all()
    assert (frame["lower"] >= 0).all()

    # A one-stage regressor writes exactly id, prediction, lower, upper.
    heat = tmp_path / "heat"
    argv = ["train", "--input", str(train), "--target", "heat_ref", "--out", str(heat)]
    assert run_cli([*argv, "--param", "n_estimators=40", "--folds", "3"]) == 0
    heat_predictions = tmp_path / "heat.csv"
    assert (
        run_cli(
            [
                "predict",
                "--model",
                str(heat),
                "--input",
                str(new),
                "--output",
                str(heat_predictions),
            ]
        )
        == 0
    )
    assert list(pd.read_csv(heat_predictions).columns) == ["id", "prediction", "lower", "upper"]

    # The same rows, spec and software again: the stored model is reused and scored again,
    # not fitted again (the campaign's training step).
    again = tmp_path / "heat-again"
    argv_again = ["train", "--input", str(train), "--target", "heat_ref", "--out", str(again)]
    assert run_cli([*argv_again, "--param", "n_estimators=40", "--folds", "3"]) == 0
    assert (again / "model.json").read_bytes() == (heat / "model.json").read_bytes()
    first_model, second_model = (
        json.loads((folder / "provenance.json").read_text())["model_id"] for folder in (heat, again)
    )
    assert second_model == first_model
    first_metrics, second_metrics = (
        json.loads((folder / "metrics.json").read_text()) for folder in (heat, again)
    )
    assert second_metrics["held_out"] == first_metrics["held_out"]
    assert first_metrics["reused_from"] is None and second_metrics["reused_from"] == first_model
    # The reuse took the first run's baselines, importance and calibration curve from the
    # scores that run kept: the same values, bit for bit.
    assert second_metrics["baselines"] == first_metrics["baselines"]
    assert (again / "importance.csv").read_bytes() == (heat / "importance.csv").read_bytes()
    kept_scores = sorted(Settings().score_dir.glob("*.json"))
    assert len(kept_scores) == 2  # the gap model's and the heat model's

    # With elemental references the formation energies also become hull distances, against
    # the references and the model's training phases.
    references = data_dir / "materials_project" / "elemental_reference_entries.json.gz"
    with_hull = tmp_path / "hull.csv"
    argv = ["predict", "--model", str(heat), "--input", str(new), "--output", str(with_hull)]
    assert run_cli([*argv, "--hull", str(references)]) == 0
    hull_frame = pd.read_csv(with_hull, dtype={"id": str})
    assert list(hull_frame.columns) == [
        "id",
        "prediction",
        "lower",
        "upper",
        "hull_distance",
        "hull_lower",
        "hull_upper",
    ]
    phases = pd.read_csv(heat / "phases.csv")
    assert len(phases) == json.loads((heat / "metrics.json").read_text())["split"]["n_train"]
    formulas = {r.id: r.formula for r in read_source(input_source(new)).records}
    expected = hull_distances(
        [
            (i, formulas[f"input:{i}"], p)
            for i, p in zip(hull_frame["id"], hull_frame["prediction"], strict=True)
        ],
        load_reference_entries(references),
        list(zip(phases["formula"], phases["label"], strict=True)),
    )
    for row in hull_frame.itertuples():
        assert row.hull_distance == pytest.approx(expected[row.id], abs=1e-6)
        assert row.hull_upper - row.hull_lower == pytest.approx(row.upper - row.lower)
    assert (
        run_cli(
            ["predict", "--model", str(out), "--input", str(new), "--output", str(with_hull)]
            + ["--hull", str(references)]
        )
        == 2
    )
    assert "needs a formation-energy regressor, not a two_stage_gap" in capsys.readouterr().err

    # Provenance: the model and both prediction sets are in the catalog, and the predictions
    # of new structures derive from the trained model.
    settings = Settings()
    provenance = json.loads((out / "provenance.json").read_text())
    with Catalog(settings.catalog_url) as catalog:
        model = catalog.get_entity(provenance["model_id"])
        assert model.kind == "model" and model.attributes["target"] == "gap"
        derived = catalog.edges(relation="wasDerivedFrom", object_id=provenance["model_id"])
        from_model = [e.subject_id for e in derived]
        kinds = sorted(e.kind for e in catalog.get_entities(from_model))
        assert kinds == ["prediction_set", "prediction_set"]
        second_run = json.loads((again / "provenance.json").read_text())["run_id"]
        steps = [a for a in catalog.activities(parent_id=second_run) if "target" in a.parameters]
        assert [(a.name, a.parameters["reused_model"]) for a in steps] == [
            ("evaluate_fitted", True)
        ]
        # The step names the kept scores it took: the file the first run wrote.
        assert steps[0].parameters["kept_scores"] in {path.stem for path in kept_scores}

    # A model whose feature labels were altered is refused with a clear message.
    document = json.loads((out / "model.json").read_text())
    document["feature_labels"][0] = "not a feature"
    (out / "model.json").write_text(json.dumps(document))
    refused = tmp_path / "refused.csv"
    argv = ["predict", "--model", str(out), "--input", str(new), "--output", str(refused)]
    assert run_cli(argv) == 2
    assert "missing ['not a feature']" in capsys.readouterr().err
    assert not refused.exists()


def test_bad_json_lines_input_is_refused(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "structure": {}, "gap": 1.0}\n{"id": "b", "structure"\n')
    assert run_cli(["train", "--input", str(broken), "--target", "gap"]) == 2
    assert "broken.jsonl line 2: not JSON" in capsys.readouterr().err
    no_structure = tmp_path / "plain.jsonl"
    no_structure.write_text('{"id": "a", "cif": "data_x", "gap": 1.0}\n')
    assert run_cli(["train", "--input", str(no_structure), "--target", "gap"]) == 2
    assert "no 'structure' column" in capsys.readouterr().err
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "structure": {}, "gap": None if i == 3 else 0.5}) + "\n"
            for i in range(12)
        )
    )
    assert run_cli(["train", "--input", str(labelled), "--target", "gap"]) == 2
    assert "1 rows have no numeric 'gap' label" in capsys.readouterr().err
