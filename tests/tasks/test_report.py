"""The campaign report's wording and tables, from hand-made run results."""

from __future__ import annotations

import math
import re

import pytest

from matscreen.tasks.report.campaign import criterion_label, model_settings, ranking_order
from matscreen.tasks.report.html import ReportContext, render_report
from matscreen.tasks.spec import CriterionSpec, ModelSpec, RankingSpec

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("criterion", "label"),
    [
        (CriterionSpec(property="band_gap", min=3, unit="eV"), "band_gap >= 3 eV"),
        (CriterionSpec(property="band_gap", max=0.21, unit="eV"), "band_gap <= 0.21 eV"),
        (
            CriterionSpec(property="band_gap", min=1.4, max=3.1, unit="eV"),
            "1.4 <= band_gap <= 3.1 eV",
        ),
        (CriterionSpec(property="is_stable", min=1, unit=""), "is_stable >= 1"),
    ],
)
def test_criteria_read_with_the_property_first(criterion: CriterionSpec, label: str) -> None:
    assert criterion_label(criterion) == label


def test_model_settings_name_where_each_parameter_came_from() -> None:
    spec = ModelSpec(target="band_gap", kind="two_stage_gap", params={"n_estimators": 150})
    summary = {
        "algorithm": "xgboost",
        "kind": "two_stage_gap",
        "n_features": 191,
        "cross_validation": {"mae": 0.3, "gap_decision": 0.4},
        "search": {"method": "random", "candidates": 12, "best_params": {"max_depth": 4}},
    }
    (settings,) = model_settings([spec], {"band_gap": summary})
    origins = {p["name"]: (p["value"], p["origin"]) for p in settings["parameters"]}
    assert origins["n_estimators"] == (150, "spec")
    assert origins["max_depth"] == (4, "search")
    assert origins["learning_rate"] == (0.03, "default")
    assert settings["search"] == "random search over 12 candidates"
    assert settings["interval"] == "cv conformal, 90%"
    assert settings["n_features"] == 191
    assert "gap predicted when P(gap) >= 0.40" in settings["notes"]
    # A summary that records the final fit's parameters is shown as it is.
    recorded = {**summary, "params": {"n_estimators": 150, "max_depth": 4}, "reused_from": "m1"}
    (settings,) = model_settings([spec], {"band_gap": recorded})
    assert [(p["name"], p["origin"]) for p in settings["parameters"]] == [
        ("n_estimators", "spec"),
        ("max_depth", "search"),
    ]
    assert "stored model m1 reused (same training set)" in settings["notes"]


def _context(**changes: object) -> ReportContext:
    fields: dict[str, object] = {
        "campaign": "demo",
        "description": "a test campaign",
        "run_id": "run-1",
        "spec_sha256": SHA,
        "finished_at": "2026-11-21T10:42:37.123456+00:00",
        "sources": [
            {
                "source": "cmr",
                "kind": "csv_cif",
                "location": "/data/perovskites_cmr/cubic_perovskites.csv",
                "database_version": "",
                "sha256": SHA,
                "n_rows": 3,
                "licence": "MIT",
                "citation": ["Castelli et al. (2012)"],
            }
        ],
        "counts": {
            "records": 3,
            "ingest_failures": 0,
            "duplicates": 0,
            "feature_failures": 0,
            "candidates": 2,
            "hits": 0,
        },
        "split": {"method": "random", "test_fraction": 0.5, "seed": 7, "n_train": 1, "n_test": 2},
        "featurization": {
            "preset": "fast",
            "n_features": 10,
            "featurizers": ["ElementProperty"],
            "config_sha256": SHA,
        },
        "metrics": {
            "band_gap": {
                "mae": 0.1,
                "rmse": 0.2,
                "r2": 0.5,
                "dummy_mae": 0.3,
                "n_train": 1,
                "n_test": 2,
                "level": 0.9,
            }
        },
        "units": {"band_gap": "eV"},
        "criteria": [{"property": "band_gap", "min": 1.4, "max": 3.1, "unit": "eV"}],
        "funnel": [("candidates", 2), ("1.4 <= band_gap <= 3.1 eV", 0), ("every criterion", 0)],
        "shortlist": [
            {
                "rank": 1,
                "id": "cmr:1",
                "formula": "SrTiO3",
                "spacegroup": "Pm-3m (221)",
                "pred_band_gap": 1.2,
                "lower_band_gap": 0.5,
                "upper_band_gap": 1.9,
                "reported_band_gap": 1.6,
                "p_success": 2.5e-5,
                "margin": -0.2,
                "meets_criteria": False,
            }
        ],
        "step_seconds": {"ingest": 1.25, "train": 2.5},
        "software": {"numpy": "2.0", "matscreen": "0.1.0"},
        "ranking_order": ranking_order(RankingSpec()),
        "properties": [
            {
                "property": "band_gap",
                "unit": "eV",
                "level": 0.9,
                "reported": True,
                "min": 1.4,
                "max": 3.1,
            }
        ],
        "validation": {"n_true_hits": 2, "n_candidates": 2, "note": None, "top": []},
    }
    fields.update(changes)
    return ReportContext(**fields)  # type: ignore[arg-type]


def test_report_explains_a_shortlist_without_predicted_hits() -> None:
    html = render_report(_context())
    assert html.count("No candidate is predicted to meet every criterion") == 2
    assert "closest to passing: those with the highest probability" in html
    # Two true hits only: recall and enrichment come with a caution.
    assert "Caution: only 2 true" in html
    margin = render_report(_context(ranking_order=ranking_order(RankingSpec(method="margin"))))
    assert "the smallest shortfall (the margin closest to 0)" in margin
    with_hits = _context(
        counts={**_context().counts, "hits": 1},
        validation={"n_true_hits": 40, "n_candidates": 90, "note": None, "top": []},
    )
    assert "closest to passing" not in render_report(with_hits)
    assert "Caution" not in render_report(with_hits)


def test_shortlist_cells_keep_the_interval_on_one_line_and_show_reported_values() -> None:
    html = render_report(_context())
    assert "[90 % interval]" in html
    assert '<td class="nw">1.200 [0.500, 1.900]</td>' in html
    assert "reported band_<wbr>gap (eV)" in html
    assert '<td class="ok">1.600</td>' in html  # inside 1.4-3.1 eV
    assert "<td>2.5e-05</td>" in html  # small probabilities are not rounded to 0
    assert "matscreen lineage cmr:1 --run run-1" in html


def test_sources_run_and_software_are_compact() -> None:
    html = render_report(_context())
    assert "database version" not in html  # empty for every source
    assert f'<code title="{SHA}">{SHA[:16]}…</code>' in html
    assert "/<wbr>perovskites_cmr/<wbr>cubic_perovskites.csv" in html
    assert "finished 2026-11-21 10:42:37 UTC" in html and "+00:00" not in html
    assert re.search(r"total \(steps before the report\)</th>\s*<th>3\.8</th>", html)
    assert "<li>matscreen <span>0.1.0</span></li>" in html
    versioned = _context(sources=[{**_context().sources[0], "database_version": "2025.1"}])
    assert "database version" in render_report(versioned)
    for anchor in ("summary", "sources", "models", "shortlist", "run"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html


def test_suggestions_have_their_own_section_when_given() -> None:
    assert 'id="suggestions"' not in render_report(_context())
    rows = [
        {
            "suggestion": 1,
            "id": "cmr:2",
            "formula": "BaTiO3",
            "rank": 2,
            "p_success": 1e-12,
            "log10_p_success": -12.0,
            "information_bits": 4e-11,
            "acquisition": 4.1e-11,
        },
        {
            "suggestion": 2,
            "id": "cmr:3",
            "formula": "KNbO3",
            "rank": 3,
            "p_success": 0.0,
            "log10_p_success": -math.inf,
            "information_bits": 0.0,
            "acquisition": 0.0,
        },
    ]
    html = render_report(
        _context(
            suggestions=rows, suggest_settings={"n": 2, "kappa": 0.5, "exclude_shortlist": True}
        )
    )
    assert 'id="suggestions"' in html and 'href="#suggestions"' in html
    assert "κ = 0.5, shortlisted candidates" in html
    assert "<td>-12.0</td>" in html and "<td>−∞</td>" in html
