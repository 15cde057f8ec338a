"""End to end: a campaign on real perovskites through a real Prefect server and Dask cluster.

The subset holds 241 real CMR perovskites, one with an unreadable CIF and one with an atom
no featurizer has data for. The test checks the
output files' values against the source data and the catalog's records, traces a
shortlisted candidate back to its source, and re-runs the campaign to show that the
content-addressed catalog reuses what it has and the ranking comes out identical.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matscreen.catalog import ArtifactStore, Catalog
from matscreen.catalog.lineage import lineage
from matscreen.flows.cli import main
from matscreen.flows.settings import Settings
from matscreen.tasks.errors import NotFoundError
from matscreen.tasks.featurize import FeatureTable
from matscreen.tasks.hashing import file_sha256
from matscreen.tasks.models.prediction import predict_surrogate
from matscreen.tasks.models.surrogate import SurrogateModel


def _truth(subset: Path) -> pd.DataFrame:
    frame = pd.read_csv(subset, dtype={"material_id": str})
    frame["id"] = "cmr_perovskites:" + frame["material_id"]
    frame["band_gap"] = frame[["dir_gap", "ind_gap"]].max(axis=1)
    return frame.set_index("id")


@pytest.mark.slow
def test_campaign_end_to_end(
    prefect_server, settings, subset_spec, perovskite_subset, tmp_path, capsys
) -> None:
    out = tmp_path / "run1"
    assert main(["campaign", "run", str(subset_spec), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    for step in ("ingest", "split", "featurize", "train", "rank", "report"):
        assert f"\n  {step} " in printed

    truth = _truth(perovskite_subset)
    metrics = json.loads((out / "metrics.json").read_text())
    ranking = pd.read_csv(out / "ranking.csv")
    shortlist = pd.read_csv(out / "shortlist.csv")

    # 241 rows, one unreadable: 240 records, about a fifth held out. The record with an
    # oganesson atom fails to featurize, so it is neither trained on nor ranked.
    counts = metrics["counts"]
    assert counts["records"] == 240 and counts["ingest_failures"] == 1
    assert counts["featurized"] == 239 and counts["feature_failures"] == 1
    unfeaturized = truth.index[11]
    assert unfeaturized not in set(ranking["id"])
    n_test, n_train = counts["test"], counts["train"]
    assert n_test + n_train == 240 and 30 < n_test < 70
    in_test = unfeaturized in _held_out_ids(settings, metrics["run_id"])
    assert len(ranking) == n_test - in_test and len(shortlist) == 10
    assert list(shortlist["rank"]) == list(range(1, 11))
    # Without a diversity rule the shortlist is the top of the ranking; ranking.csv marks it.
    from_ranking = shortlist.drop(columns="spacegroup")
    pd.testing.assert_frame_equal(
        from_ranking, ranking[from_ranking.columns].head(10), check_dtype=False
    )
    assert list(ranking["shortlist_position"].head(10)) == list(range(1, 11))
    assert ranking["shortlist_position"].iloc[10:].isna().all()
    # The shortlist names each candidate's space group (symmetry found to within 0.1 Å).
    first = shortlist.loc[0]
    analyzer = SpacegroupAnalyzer(
        Structure.from_str(truth.loc[first["id"], "cif"], fmt="cif"), symprec=0.1
    )
    expected = f"{analyzer.get_space_group_symbol()} ({analyzer.get_space_group_number()})"
    assert first["spacegroup"] == expected
    assert not (shortlist["spacegroup"] == "unknown").any()
    # Ranked by the probability of meeting every criterion, from the 90 % intervals
    # (probabilities within 1e-9 are ties, broken by margin).
    assert (np.diff(ranking["p_success"]) <= 1e-9).all()
    assert ranking[["lower_band_gap", "upper_band_gap"]].notna().all().all()
    assert list(ranking["meets_criteria"]) == list(ranking["margin"] >= 0)
    assert list(ranking["formula"]) == [_reduced(truth.loc[i, "cif"]) for i in ranking["id"]]

    # Held-out metrics recomputed from the written predictions and the source file.
    for target, column in (("heat_of_formation", "heat_ref"), ("band_gap", "band_gap")):
        m = metrics["targets"][target]
        assert m["n_train"] == n_train - (not in_test) and m["n_test"] == len(ranking)
        assert m["unit"] == "eV"
        reported = truth.loc[ranking["id"], column].to_numpy()
        predicted = ranking[f"pred_{target}"].to_numpy()
        assert m["mae"] == pytest.approx(np.mean(np.abs(reported - predicted)), abs=1e-4)
        train = truth.drop([*ranking["id"], truth.index[6], unfeaturized])  # 6: unreadable
        baseline = train[column].mean()
        assert m["dummy_mae"] == pytest.approx(np.mean(np.abs(reported - baseline)), abs=1e-9)
    # Heats of formation are learnable from ~190 rows; mostly-zero band gaps are not yet.
    hof = metrics["targets"]["heat_of_formation"]
    assert hof["mae"] < hof["dummy_mae"]
    assert ranking["pred_band_gap"].min() >= 0.0

    # Screening summary against the reported values of the held-out candidates.
    held = truth.loc[ranking["id"]]
    true_hit = (held["heat_ref"] < 0.21) & held["band_gap"].between(1.4, 3.1)
    assert metrics["screening"]["n_true_hits"] == int(true_hit.sum())
    assert metrics["screening"]["true_hits_in_shortlist"] == int(true_hit.iloc[:10].sum())

    report = (out / "report.html").read_text()
    assert f"{metrics['targets']['heat_of_formation']['mae']:.4f}" in report
    assert file_sha256(perovskite_subset)[:16] in report
    # Two parity plots, the calibration plot and the unit cells of the top 8 candidates.
    assert report.count("data:image/png;base64,") == 3 + 8
    assert report.count('alt="unit cell of ') == 8
    for target, m in metrics["targets"].items():
        model = metrics["models"][target]
        # Coverage of the 90 % intervals, as in metrics.json and on the calibration curve.
        assert f"<td>{m['coverage']:.3f}</td>" in report
        (at_90,) = [c for c in model["calibration"] if c["level"] == 0.9]
        assert at_90["coverage"] == m["coverage"]
        # Baselines on the same held-out rows, and the most important feature.
        (forest,) = [b for b in model["baselines"] if b["name"] == "Magpie + RF"]
        assert f"<td>{forest['mae']:.4f}</td>" in report
        assert f"<code>{model['importance'][0]['feature']}</code>" in report
    assert unfeaturized in report and "DensityFeatures failed: TypeError" in report
    # Criteria with the property first, intervals with their level, and for each
    # shortlisted candidate its reported values next to the predictions.
    for label in ("heat_of_formation <= 0.21 eV", "1.4 <= band_gap <= 3.1 eV"):
        assert escape(label) in report
    assert f"[{metrics['targets']['band_gap']['level'] * 100:g} % interval]" in report
    top = shortlist.loc[0, "id"]
    for column in ("heat_ref", "band_gap"):
        assert f">{truth.loc[top, column]:.3f}</td>" in report
    if counts["hits"] == 0:
        assert "closest to passing: those with the highest probability" in report
    assert f'<code title="{file_sha256(perovskite_subset)}">' in report
    assert '<code class="spec">n_estimators=150</code>' in report  # set in the spec
    assert f"matscreen lineage {top} --run {metrics['run_id']}" in report
    total = math.fsum(metrics["step_seconds"].values())  # keys are sorted in the file
    assert f"total (steps before the report)</th>\n<th>{total:.1f}</th>" in report
    assert 'id="suggestions"' not in report  # none asked for

    with Catalog(settings.catalog_url) as catalog:
        _check_catalog(
            catalog,
            ArtifactStore(settings.artifact_dir),
            metrics,
            ranking,
            perovskite_subset,
            truth,
            out,
        )

    # The lineage command names the source file's sha256 and licence.
    first = shortlist.loc[0, "id"]
    assert main(["lineage", first.split(":")[1]]) == 0
    traced = capsys.readouterr().out
    assert f"candidate {first}: rank 1" in traced
    assert file_sha256(perovskite_subset) in traced and "licence MIT" in traced
    assert main(["lineage", first, "--json"]) == 0
    chain = json.loads(capsys.readouterr().out)
    assert chain["row"]["rank"] == 1 and chain["record"]["name"] == first
    assert chain["entities"][-2]["attributes"]["sha256"] == file_sha256(perovskite_subset)

    # find candidates judges the stored ranking under other criteria, or by its own.
    low = float(ranking["pred_band_gap"].median())
    high = float(ranking["pred_band_gap"].max()) + 1.0
    criterion = f"band_gap={low!r}:{high!r}:eV"
    assert main(["find", "candidates", "--criterion", criterion, "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    inside = ranking[ranking["pred_band_gap"].between(low, high)].sort_values("rank")
    assert found and [c["id"] for c in found] == list(inside["id"])
    assert main(["find", "candidates", "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in own] == list(
        ranking[ranking["meets_criteria"]].sort_values("rank")["id"]
    )

    # A second run reuses every stored entity and ranks identically.
    out2 = tmp_path / "run2"
    assert main(["campaign", "run", str(subset_spec), "--output", str(out2)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out2 / "ranking.csv"), ranking)
    with Catalog(settings.catalog_url) as catalog:
        assert len(catalog.find_entities("structure_record")) == 240
        assert len(catalog.find_entities("ranking")) == 1
        runs = catalog.activities(kind="flow_run")
        assert [r.status for r in runs] == ["completed", "completed"]
        second_ingest = [
            a for a in catalog.activities(parent_id=runs[1].id) if a.name == "read_source"
        ][0]
        assert len(catalog.edges(relation="used", subject_id=second_ingest.id)) == 242
        assert catalog.edges(relation="wasGeneratedBy", object_id=second_ingest.id) == []
        # Every feature row came from the feature store: no featurize task ran.
        (second_featurize,) = [
            a for a in catalog.activities(parent_id=runs[1].id) if a.name == "featurize"
        ]
        assert second_featurize.parameters["structures_from_store"] == 240  # failure too
        assert catalog.activities(parent_id=second_featurize.id) == []
        # The training sets are unchanged: the stored models are reused, not fitted again.
        models = {m.attributes["target"]: m.id for m in catalog.find_entities("model")}
        assert len(models) == 2
        steps = [a for a in catalog.activities(parent_id=runs[1].id) if "target" in a.parameters]
        assert {a.name for a in steps} == {"evaluate_fitted"}
        assert all(a.parameters["reused_model"] for a in steps)
    metrics2 = json.loads((out2 / "metrics.json").read_text())
    for target, model_id in models.items():
        assert metrics2["models"][target]["reused_from"] == model_id
        assert metrics2["targets"][target] == metrics["targets"][target]
    # What changed since the first run: nothing.
    changes = metrics2["changes"]
    assert changes["previous_run"] == metrics["run_id"] and metrics["changes"] is None
    assert changes["unchanged"] == len(ranking) and changes["moved"] == 0
    assert changes["new_hits"]["count"] == changes["new_candidates"]["count"] == 0
    assert "Changes since the previous run" in (out2 / "report.html").read_text()
    with Catalog(settings.catalog_url) as catalog:
        # The second run reused the first run's ranking; lineage finds it through either run.
        artifacts = ArtifactStore(settings.artifact_dir)
        for run in runs:
            assert lineage(catalog, artifacts, first, run_id=run.id).row["rank"] == 1
        with pytest.raises(NotFoundError, match=f"candidate {first} is in no ranking in run x"):
            lineage(catalog, artifacts, first, run_id="x")


def _held_out_ids(settings: Settings, run_id: str) -> set[str]:
    with Catalog(settings.catalog_url) as catalog:
        (split,) = catalog.find_entities("data_split")
        return set(split.attributes["test_ids"])


def _reduced(cif: str) -> str:
    from matscreen.tasks.sources.csv_cif import parse_cif

    return parse_cif(cif, "test").composition.reduced_formula


def _check_catalog(catalog, artifacts, metrics, ranking, subset, truth, out) -> None:
    run_id = metrics["run_id"]
    run = catalog.get_activity(run_id)
    assert run.kind == "flow_run" and run.status == "completed"
    assert run.software["matscreen"] == "0.1.0" and run.ended_at > run.started_at

    records = catalog.find_entities("structure_record")
    assert len(records) == 240
    record = next(r for r in records if r.name == ranking.loc[0, "id"])
    assert record.attributes["properties"]["band_gap"] == truth.loc[record.name, "band_gap"]

    errors = {e.attributes["stage"]: e for e in catalog.find_entities("record_error")}
    assert set(errors) == {"ingest", "featurize"}
    assert errors["ingest"].attributes["row"] == 7
    assert "unreadable CIF" in errors["ingest"].attributes["message"]
    assert errors["featurize"].attributes["row"] == 12
    assert "DensityFeatures failed" in errors["featurize"].attributes["message"]
    failed_record = next(r for r in records if r.name == errors["featurize"].name)
    assert catalog.edges("wasDerivedFrom", errors["featurize"].id, failed_record.id)

    (snapshot,) = catalog.find_entities("source_snapshot")
    assert snapshot.attributes["sha256"] == file_sha256(subset)
    assert snapshot.attributes["licence"].startswith("MIT")
    derived = catalog.edges(relation="wasDerivedFrom", object_id=snapshot.id)
    assert len(derived) == 241 + 1  # 240 records, 1 error, and the split

    steps = {a.name: a for a in catalog.activities(parent_id=run_id)}
    assert {
        "load_spec",
        "read_source",
        "choose_split",
        "featurize",
        "rank_with",
        "write_outputs",
    } <= set(steps)
    batches = catalog.activities(parent_id=steps["featurize"].id)
    assert len(batches) == 6 and all(b.prefect_run_id for b in batches)  # 240 / 40

    # The stored models reproduce the stored held-out predictions from the stored features.
    (table_entity,) = catalog.find_entities("feature_table")
    features = FeatureTable.from_parquet_bytes(
        artifacts.get_bytes(table_entity.attributes["artifact_sha256"])
    ).frame
    assert features.shape == (239, len(table_entity.attributes["labels"]))
    for model_entity in catalog.find_entities("model"):
        a = model_entity.attributes
        assert a["metrics"] == {
            k: v for k, v in metrics["targets"][a["target"]].items() if k != "unit"
        }
        model = SurrogateModel.from_json(artifacts.get_bytes(a["artifact_sha256"]))
        predicted = predict_surrogate(
            model, list(ranking["id"]), features.loc[ranking["id"]].to_numpy(), features.columns
        )
        np.testing.assert_allclose(
            predicted.prediction, ranking[f"pred_{a['target']}"].to_numpy(), rtol=1e-5
        )
        np.testing.assert_allclose(
            predicted.lower, ranking[f"lower_{a['target']}"].to_numpy(), rtol=1e-5
        )

    # Lineage from the top candidate reaches its record and the source snapshot.
    found = lineage(catalog, artifacts, ranking.loc[0, "id"])
    kinds = [e.kind for e in found.entities]
    assert kinds == [
        "ranking",
        "prediction_set",
        "prediction_set",
        "model",
        "model",
        "training_set",
        "training_set",
        "data_split",
        "feature_table",
        "structure_record",
        "source_snapshot",
        "campaign_spec",
    ]
    assert found.record.name == ranking.loc[0, "id"] and found.row["rank"] == 1
    assert found.generated_by[snapshot.id].name == "read_source"

    (report,) = catalog.find_entities("report")
    files = report.attributes["files"]
    top = {"shortlist.csv", "ranking.csv", "validation.csv", "metrics.json", "report.html"}
    assert {name for name in files if "/" not in name} == top
    # The DFT hand-off: CIF and POSCAR of the 10 shortlisted, JSON lines and a README.
    handed = {name for name in files if name.startswith("structures/")}
    assert len(handed) == 2 * 10 + 2 and len(files) == len(top) + len(handed)
    for name, info in files.items():
        assert info["sha256"] == file_sha256(out / name)
