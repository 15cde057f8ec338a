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
    data.setdefault("featurization", {})["prest"] = "fast"
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
    from matscreen.catalog import Catalog
    from matscreen.flows.settings import Settings

    Catalog(Settings().catalog_url).close()  # an empty catalog
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


class _RecordingFlow:
    """Stands in for the campaign flow: keeps the parameters it is called with."""

    def __init__(self) -> None:
        self.parameters: dict | None = None

    def with_options(self, **options: object) -> _RecordingFlow:
        return self

    def __call__(self, **parameters: object) -> dict:
        self.parameters = parameters
        return {}


@pytest.fixture()
def recording_flow(monkeypatch: pytest.MonkeyPatch) -> _RecordingFlow:
    """The campaign command with the flow, Prefect API and Dask cluster stood in for."""
    from contextlib import nullcontext

    from matscreen.flows import campaign, runtime
    from matscreen.flows.cli import campaign as campaign_commands

    flow = _RecordingFlow()
    monkeypatch.setattr(campaign, "screen_candidates", flow)
    monkeypatch.setattr(runtime, "prefect_api", lambda: nullcontext("http://127.0.0.1:1/api"))
    monkeypatch.setattr(
        runtime, "dask_scheduler", lambda settings: nullcontext("tcp://127.0.0.1:1")
    )
    monkeypatch.setattr(campaign_commands, "_print_summary", lambda *args: None)
    return flow


def test_suggest_option_reaches_the_flow(home: Path, tmp_path: Path, recording_flow) -> None:
    out = tmp_path / "out"
    assert main(["campaign", "run", str(DEFAULT_SPEC), "--suggest", "8", "--output", str(out)]) == 0
    assert recording_flow.parameters == {
        "spec_path": str(DEFAULT_SPEC.resolve()),
        "output_dir": str(out),
        "suggest": 8,
    }
    assert main(["campaign", "run", str(DEFAULT_SPEC)]) == 0
    assert recording_flow.parameters["suggest"] is None


def test_the_campaign_flow_takes_a_suggest_count() -> None:
    import inspect

    from matscreen.flows.campaign import screen_candidates

    parameter = inspect.signature(screen_candidates.fn).parameters["suggest"]
    assert parameter.default is None


def test_bad_suggest_count_fails_before_any_work(home: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["campaign", "run", "--suggest", "0"])
    assert stopped.value.code == 2
    assert "--suggest: expected 1 or more, got 0" in capsys.readouterr().err

    data = yaml.safe_load(DEFAULT_SPEC.read_text())
    data["ranking"] = {"method": "margin"}  # point predictions: no intervals needed
    data["models"][1]["interval"] = "none"
    spec = tmp_path / "no-intervals.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert main(["campaign", "run", str(spec), "--suggest", "3"]) == 2
    assert "ranking.suggest: needs prediction intervals" in capsys.readouterr().err
    assert not home.exists()


@pytest.mark.parametrize("prefect_first", [True, False])
def test_the_console_shows_warnings_not_prefects_and_dasks_routine(prefect_first: bool) -> None:
    import os
    import subprocess
    import sys

    code = "\n".join(
        [
            # Messages are joined at run time: Python 3.13 prints the source line of a warning
            # raised from ``-c`` code, which must not itself count as the message shown.
            "import logging",
            "import prefect" if prefect_first else "",
            "from matscreen.flows.runtime import quiet_console",
            "quiet_console()",
            "from prefect.logging.configuration import setup_logging",
            "setup_logging()",  # as a flow run does
            "logging.getLogger('prefect.task_runs').info('routine' + ' line')",
            "logging.getLogger('prefect').info('routine' + ' line')",
            "logging.getLogger('prefect.flow_runs').warning('a warning')",
            "import distributed",
            "logging.getLogger('distributed.scheduler').info('routine' + ' line')",
            "import warnings",
            "warnings.warn('Sending large graph of size 14.90 MiB.', UserWarning)",
            "import os; print(os.environ['PREFECT_LOGGING_LEVEL'])",
        ]
    )
    quiet = ("PREFECT_LOGGING_LEVEL", "DASK_LOGGING__DISTRIBUTED")
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "a warning" in done.stderr and "routine line" not in done.stderr
    assert "large graph" not in done.stderr
    assert done.stdout.strip() == "WARNING"  # inherited by the workers started after


def _bash_completions(script: Path, words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), with ``script``
    sourced."""
    import shlex
    import subprocess

    line = " ".join(words)
    commands = (
        f"source {shlex.quote(str(script))}; COMP_WORDS=({' '.join(map(shlex.quote, words))}); "
        f"COMP_CWORD={len(words) - 1}; COMP_LINE={shlex.quote(line)}; COMP_POINT=${{#COMP_LINE}}; "
        '_shtab_matscreen; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", commands], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_the_bash_completion_script_completes_commands_and_options(tmp_path: Path, capsys) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "matscreen.bash"
    script.write_text(capsys.readouterr().out)
    assert _bash_completions(script, ["matscreen", "lin"]) == ["lineage"]
    assert "campaign" in _bash_completions(script, ["matscreen", ""])
    assert "--verbose" in _bash_completions(script, ["matscreen", "--"])
    # File and folder arguments complete file names.
    (tmp_path / "spec_a.yaml").write_text("")
    spec_words = ["matscreen", "campaign", "run", str(tmp_path / "spec_")]
    assert _bash_completions(script, spec_words) == [str(tmp_path / "spec_a.yaml")]
    input_words = ["matscreen", "train", "--input", str(tmp_path / "spec_")]
    assert _bash_completions(script, input_words) == [str(tmp_path / "spec_a.yaml")]
    # The zsh and tcsh scripts are made from the same parser.
    for shell in ("zsh", "tcsh"):
        assert main(["completion", shell]) == 0
        assert "lineage" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["completion", "fish"])
    assert "invalid choice: 'fish'" in capsys.readouterr().err
