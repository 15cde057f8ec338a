"""The ranking part of a campaign spec: defaults, and mistakes named by their key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matscreen.flows.cli import DEFAULT_SPEC
from matscreen.tasks.errors import SpecError
from matscreen.tasks.spec import SuggestSpec, load_spec, with_suggestions


@pytest.fixture()
def demo_data() -> dict:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def _load(tmp_path: Path, data_dir: Path, data: dict):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_spec(path, data_dir)


def test_default_ranking_is_by_probability_without_diversity(tmp_path, data_dir, demo_data) -> None:
    ranking = _load(tmp_path, data_dir, demo_data).ranking
    assert ranking.method == "probability"
    assert ranking.diversity.by == "none" and ranking.diversity.mmr_lambda is None
    assert ranking.suggest is None
    assert ranking.needs_uncertainty() == "method"


def test_a_full_ranking_section_loads(tmp_path, data_dir, demo_data) -> None:
    demo_data["ranking"] = {
        "method": "pareto",
        "pareto_objective": "margin",
        "interval_level": 0.8,
        "diversity": {"by": "chemsys", "cap": 2, "mmr_lambda": 0.7, "metric": "cosine"},
        "suggest": {"n": 10, "kappa": 0.5},
    }
    ranking = _load(tmp_path, data_dir, demo_data).ranking
    assert (ranking.method, ranking.pareto_objective, ranking.interval_level) == (
        "pareto",
        "margin",
        0.8,
    )
    assert ranking.diversity.cap == 2 and ranking.diversity.metric == "cosine"
    assert ranking.suggest is not None and ranking.suggest.exclude_shortlist
    assert ranking.needs_uncertainty() == "suggest"


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ({"method": "best"}, r"ranking\.method: Input should be 'probability', 'margin' or"),
        ({"diversity": {"by": "chemsys", "colour": 1}}, r"ranking\.diversity\.colour: unknown key"),
        ({"diversity": {"by": "chemsys"}}, r"ranking\.diversity: 'by: chemsys' needs a 'cap'"),
        ({"diversity": {"cap": 3}}, r"ranking\.diversity: 'cap' needs 'by'"),
        ({"diversity": {"by": "chemsys", "cap": 0}}, r"ranking\.diversity\.cap: .*(got 0)"),
        ({"diversity": {"mmr_lambda": 1.5}}, r"ranking\.diversity\.mmr_lambda: .*(got 1\.5)"),
        ({"interval_level": 1.0}, r"ranking\.interval_level: .*(got 1\.0)"),
        ({"suggest": {"kappa": 1.0}}, r"ranking\.suggest\.n: required key is missing"),
        ({"suggest": {"n": 3, "kappa": -1}}, r"ranking\.suggest\.kappa: .*(got -1)"),
        ({"pareto_objective": "margin"}, r"ranking: 'pareto_objective' applies to method"),
    ],
)
def test_ranking_mistakes_are_named_by_their_key(
    tmp_path, data_dir, demo_data, ranking, message
) -> None:
    demo_data["ranking"] = ranking
    with pytest.raises(SpecError, match=message):
        _load(tmp_path, data_dir, demo_data)


def test_probability_ranking_needs_models_with_intervals(tmp_path, data_dir, demo_data) -> None:
    demo_data["ranking"] = {"method": "probability"}
    assert _load(tmp_path, data_dir, demo_data).ranking.needs_uncertainty() == "method"
    demo_data["models"][1]["interval"] = "none"
    with pytest.raises(
        SpecError, match=r"ranking\.method: needs prediction intervals, but models\.1\.interval"
    ):
        _load(tmp_path, data_dir, demo_data)
    demo_data["ranking"] = {"method": "pareto", "pareto_objective": "margin"}
    assert _load(tmp_path, data_dir, demo_data).ranking.method == "pareto"


def test_suggest_count_sets_suggestions_on_a_spec_without_them(tmp_path, data_dir, demo_data):
    spec = _load(tmp_path, data_dir, demo_data)
    assert with_suggestions(spec, None) is spec
    effective = with_suggestions(spec, 7)
    assert effective.ranking.suggest == SuggestSpec(n=7, kappa=1.0, exclude_shortlist=True)
    # Only the suggestions change, and the run records (and fingerprints) the change.
    assert effective.model_dump(exclude={"ranking"}) == spec.model_dump(exclude={"ranking"})
    assert effective.fingerprint() != spec.fingerprint()


def test_suggest_count_keeps_the_spec_kappa_and_exclusion(tmp_path, data_dir, demo_data):
    demo_data["ranking"] = {
        "method": "probability",
        "suggest": {"n": 3, "kappa": 0.25, "exclude_shortlist": False},
    }
    effective = with_suggestions(_load(tmp_path, data_dir, demo_data), 12)
    assert effective.ranking.suggest == SuggestSpec(n=12, kappa=0.25, exclude_shortlist=False)
    assert effective.ranking.method == "probability"
    # The recorded (dumped) effective spec loads again with the override: a reproduction
    # of the run suggests as many.
    recorded = tmp_path / "recorded.yaml"
    recorded.write_text(yaml.safe_dump(effective.model_dump(mode="json")))
    again = load_spec(recorded, data_dir)
    assert again.ranking.suggest.n == 12
    assert again.fingerprint() == effective.fingerprint()


def test_suggest_count_is_refused_where_models_make_no_intervals(tmp_path, data_dir, demo_data):
    spec = _load(tmp_path, data_dir, demo_data)
    with pytest.raises(SpecError, match=r"ranking\.suggest\.n: .*\(got 0\)"):
        with_suggestions(spec, 0)
    demo_data["ranking"] = {"method": "margin"}  # point predictions: no intervals needed
    demo_data["models"][1]["interval"] = "none"
    spec = _load(tmp_path, data_dir, demo_data)
    with pytest.raises(
        SpecError,
        match=r"perovskite-water-splitting with 5 suggestions: ranking\.suggest: needs "
        r"prediction intervals, but models\.1\.interval is 'none'",
    ):
        with_suggestions(spec, 5)
