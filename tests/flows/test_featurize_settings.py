"""Settings reach the featurization tasks as arguments."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from matscreen.flows import featurize
from matscreen.flows.settings import Settings
from matscreen.tasks.spec import FeaturizationSpec


class _Started(Exception):
    pass


def test_the_featurizer_memory_limit_of_the_settings_reaches_the_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MATSCREEN_HOME", str(tmp_path))
    monkeypatch.setenv("MATSCREEN_FEATURIZER_MEMORY_MB", "1234")
    monkeypatch.setenv("MATSCREEN_DASK_WORKERS", "3")
    seen: dict[str, int] = {}

    def start(records, spec, store, workers, memory_mb):  # type: ignore[no-untyped-def]
        seen.update(workers=workers, memory_mb=memory_mb)
        raise _Started

    monkeypatch.setattr(featurize, "start_featurization", start)
    spec = FeaturizationSpec(preset="fast")
    with pytest.raises(_Started):
        featurize.featurize_and_record([], spec, Settings(), SimpleNamespace(), {})
    assert seen == {"workers": 3, "memory_mb": 1234}
