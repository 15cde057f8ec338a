"""A full disk: one line naming the catalog, nothing half-written, and the same command
works once there is room (a tiny tmpfs; skipped where mounting is not permitted)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_nothing_half_written(
    tiny_disk: Path, data_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "MATSCREEN_HOME": str(tiny_disk / "home")}
    env.pop("MATSCREEN_CATALOG_URL", None)
    env.pop("PREFECT_API_URL", None)

    def matscreen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "matscreen.flows.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )

    ingest = (
        "ingest",
        "files",
        str(data_dir / "materials_project" / "summary_200.jsonl"),
        "--licence",
        "CC-BY-4.0",
        "--citation",
        "Materials Project",
        "--quiet",
    )
    full = matscreen(*ingest)
    assert full.returncode == 2, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("matscreen: error: catalog sqlite:///") and "disk is full" in last
    assert "Traceback" not in full.stderr, full.stderr[-3000:]

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    again = matscreen(*ingest)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "200" in again.stdout
    checked = matscreen("verify")
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert "no problems found" in checked.stdout
    runs = matscreen("find", "runs")
    assert runs.stdout.count("completed") == 1 and "running" not in runs.stdout
