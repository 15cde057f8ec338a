"""A home the user can read but not write (another user's, a read-only mount) can be
queried: find, show, lineage, export and verify open it read-only; a run refuses it at
once, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest


def _as_reader(home: Path) -> tuple[list[str], dict[str, str]]:
    """The command prefix and environment of a user who may read but not write ``home``."""
    scratch = Path(tempfile.mkdtemp(prefix="reader-"))
    os.chmod(scratch, 0o777)
    env = {
        **os.environ,
        "MATSCREEN_HOME": str(home),
        "HOME": str(scratch),
        "PREFECT_HOME": str(scratch / ".prefect"),
    }
    env.pop("MATSCREEN_CATALOG_URL", None)
    prefix = [sys.executable, "-m", "matscreen.flows.cli"]
    if os.geteuid() == 0:  # root writes anywhere: read as the unprivileged user instead
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *prefix]
    else:
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
    return prefix, env


@pytest.mark.slow
def test_a_read_only_home_can_be_queried(campaign_runs, tmp_path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to read as another user")
    folder = Path(tempfile.mkdtemp(prefix="readonly-"))
    os.chmod(folder, 0o755)
    home = folder / "home"
    shutil.copytree(campaign_runs.home, home)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    before = {p: p.stat().st_mtime_ns for p in home.rglob("*")}
    prefix, env = _as_reader(home)
    run = campaign_runs.runs[0]["run_id"]
    out = Path(env["HOME"]) / "export"
    shortlist = pd.read_csv(campaign_runs.runs[0]["output_dir"] / "shortlist.csv")
    candidate = str(shortlist["id"].iloc[0])

    def matscreen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *args], env=env, capture_output=True, text=True, timeout=600
        )

    for args in (
        ["find", "runs"],
        ["show", run],
        ["lineage", candidate, "--run", run],
        ["export", "prov", run, "--output", str(out)],
        ["verify"],
    ):
        result = matscreen(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert run in matscreen("find", "runs").stdout
    assert (out / f"{run}.prov.json").exists() or any(out.iterdir())

    spec_text = campaign_runs.runs[0]["spec"].read_text()
    csv = next(line.split("path:")[1].strip() for line in spec_text.splitlines() if "path:" in line)
    shutil.copy(csv, folder / "subset.csv")
    spec = folder / "subset.yaml"
    spec.write_text(spec_text.replace(csv, str(folder / "subset.csv")))
    for path in (spec, folder / "subset.csv"):
        path.chmod(0o644)
    refused = matscreen("campaign", "run", str(spec), "--output", str(Path(env["HOME"]) / "run"))
    assert refused.returncode == 2
    assert "is read-only for this user" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # nothing in the home changed
    assert {p: p.stat().st_mtime_ns for p in home.rglob("*")} == before
