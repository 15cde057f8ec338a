"""The command line refuses bad input before doing any work, with a message naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from matscreen.flows.cli import DEFAULT_SPEC, build_parser, main


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MATSCREEN_CATALOG_URL", raising=False)
    return tmp_path / "home"


def test_bad_spec_fails_before_any_work(home: Path, tmp_path: Path, capsys) -> None:
    data = yaml.safe_load(DEFAULT_SPEC.read_text())
    data["featurization"]["prest"] = "fast"
    data["models"][1]["params"] = "deep"
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump(data))

    assert main(["campaign", "run", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"matscreen: error: campaign spec {spec}")
    assert "featurization.prest: unknown key" in err
    assert "models.1.params: " in err
    assert not home.exists()  # no catalog, no artifacts: nothing started


def test_unknown_candidate_is_a_clear_error(home: Path, capsys) -> None:
    assert main(["lineage", "cmr_perovskites:999999"]) == 2
    assert "no structure record with id 'cmr_perovskites:999999'" in capsys.readouterr().err


def test_default_spec_is_the_demo_campaign() -> None:
    args = build_parser().parse_args(["campaign", "run"])
    assert Path(args.spec) == DEFAULT_SPEC
    assert DEFAULT_SPEC.name == "perovskite-water-splitting.yaml" and DEFAULT_SPEC.is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["ingest", "files", "no/such/folder", "--licence", "x", "--citation", "y"],
            "sources.0.path: file or folder not found",
        ),
        (["ingest", "mp", "--range", "band_gap=1"], "--range 'band_gap=1': expected FIELD=MIN:MAX"),
        (["ingest", "mp", "--range", "band_gap=a:2"], "bounds must be numbers"),
        (["ingest", "mp", "--properties", "colour"], "sources.0.properties: unknown MP properties"),
        (["ingest", "prototypes", "perovskite_ABX3", "--site", "A"], "expected LABEL=El1,El2"),
        (
            ["ingest", "optimade", "ftp://x", "--licence", "x", "--citation", "y"],
            "sources.0.base_url: ",
        ),
        (
            ["ingest", "files", ".", "--licence", "x", "--citation", "y", "--property", "hue=h"],
            "--property 'hue=h': expected NAME=FIELD:UNIT",
        ),
    ],
)
def test_bad_ingest_arguments_fail_before_any_work(
    home: Path, capsys, argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not home.exists()
