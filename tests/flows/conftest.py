"""Fixtures of the flow tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from matscreen.flows.settings import Settings


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh home under the test's folder, a two-worker LocalCluster, the default catalog."""
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "2")
    for name in ("MATSCREEN_CATALOG_URL", "MATSCREEN_DASK_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return Settings()
