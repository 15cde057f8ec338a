"""matscreen's Python API: run a screening campaign from a script or a notebook.

>>> import matscreen
>>> result = matscreen.run_campaign("deploy/campaigns/perovskite-water-splitting.yaml")
>>> result.shortlist.head()          # the best candidates, as a DataFrame
>>> result.metrics["targets"]        # held-out metrics of every model

``run_campaign`` is what ``matscreen campaign run`` calls: the same flow on Prefect and
Dask (a local Prefect API and a Dask LocalCluster are started for the call unless
``PREFECT_API_URL`` and ``MATSCREEN_DASK_ADDRESS`` point at running ones), with every
step recorded in the catalog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from matscreen.flows.settings import Settings
from matscreen.tasks.errors import MatscreenError, SpecError
from matscreen.tasks.files import write_atomically
from matscreen.tasks.spec import CampaignSpec, describe_errors, load_spec

try:
    __version__ = version("matscreen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["CampaignResult", "CampaignSpec", "__version__", "load_spec", "run_campaign"]


@dataclass(frozen=True)
class CampaignResult:
    """What a campaign run produced.

    Attributes
    ----------
    run_id
        The run's id (its Prefect flow run id; ``matscreen show RUN_ID`` tells its story).
    output_dir
        The folder of the run's files.
    ranking
        Every screened candidate, ranked (``ranking.csv``).
    shortlist
        The shortlisted candidates in shortlist order (``shortlist.csv``).
    validation
        The held-out records ranked like candidates, predictions beside the reported
        values (``validation.csv``).
    metrics
        The metrics document (``metrics.json``).
    files
        Every written file: ``{name: {path, sha256, bytes}}``.
    suggestions
        The suggested next experiments (``suggestions.csv``), if the campaign asks for them.
    seconds
        Wall-clock seconds of each step, and ``total`` for the whole call.
    """

    run_id: str
    output_dir: Path
    ranking: pd.DataFrame
    shortlist: pd.DataFrame
    validation: pd.DataFrame | None
    metrics: dict[str, Any]
    files: dict[str, dict[str, Any]]
    suggestions: pd.DataFrame | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _spec_file(spec: str | Path | CampaignSpec | dict[str, Any], settings: Settings) -> Path:
    """The spec as a file the flow can record: the path given, or the object written under
    ``$MATSCREEN_HOME/specs/`` by its content hash."""
    if isinstance(spec, str | Path):
        return Path(spec).resolve()
    if isinstance(spec, dict):
        try:
            spec = CampaignSpec.model_validate(spec, context={"data_dir": settings.data_dir})
        except ValidationError as exc:
            raise SpecError(f"campaign spec: {describe_errors(exc)}") from exc
    if not isinstance(spec, CampaignSpec):
        raise MatscreenError(
            "run_campaign: spec must be a path, a CampaignSpec or a dict, got "
            f"{type(spec).__name__}"
        )
    path = settings.home / "specs" / f"{spec.name}-{spec.fingerprint()[:16]}.yaml"
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text.encode("utf-8"))
    return path


def execute_campaign(
    settings: Settings, spec_path: Path, output: Path | None, suggest: int | None = None
) -> dict[str, Any]:
    """Run the campaign flow on Prefect and Dask (served locally when not configured).

    Returns the flow's result (``run_id``, ``output_dir``, ``files``, ``metrics``,
    ``step_seconds``) with ``startup_seconds`` and ``total_seconds`` added.

    Raises
    ------
    MatscreenError
        If the catalog cannot be written (a read-only home), ``MATSCREEN_DASK_ADDRESS`` is
        set without ``PREFECT_API_URL``, or the run fails
        on bad input (the message names it).
    """
    from prefect.settings import PREFECT_API_URL

    from matscreen.catalog import Catalog
    from matscreen.flows.campaign import screen_candidates
    from matscreen.flows.runtime import dask_scheduler, dask_task_runner, prefect_api

    with Catalog(settings.catalog_url) as catalog:
        catalog.check_writable()  # a read-only home is refused before anything starts

    if settings.dask_address and not PREFECT_API_URL.value():
        raise MatscreenError(
            f"MATSCREEN_DASK_ADDRESS is set ({settings.dask_address}) but PREFECT_API_URL is "
            "not: workers of an existing Dask cluster cannot reach the Prefect API this "
            "command would serve on loopback; start a Prefect server and set PREFECT_API_URL"
        )
    started = time.perf_counter()
    with prefect_api() as api_url, dask_scheduler(settings) as address:
        startup = time.perf_counter() - started
        runner = dask_task_runner(address)
        result = screen_candidates.with_options(task_runner=runner)(
            spec_path=str(spec_path.resolve()),
            output_dir=str(output) if output else None,
            suggest=suggest,
        )
    return {
        **result,
        "prefect_api": api_url,
        "dask_scheduler": address,
        "startup_seconds": startup,
        "total_seconds": time.perf_counter() - started,
    }


def _csv(files: dict[str, dict[str, Any]], name: str) -> pd.DataFrame | None:
    return pd.read_csv(files[name]["path"]) if name in files else None


def run_campaign(
    spec: str | Path | CampaignSpec | dict[str, Any],
    output_dir: str | Path | None = None,
    suggest: int | None = None,
) -> CampaignResult:
    """Run a screening campaign end to end and return its tables and metrics.

    Parameters
    ----------
    spec
        A campaign spec: a YAML file, a :class:`CampaignSpec` (e.g. from :func:`load_spec`,
        changed with ``model_copy``), or the same as a dict.
    output_dir
        Where to write the run's files; default ``runs/<run id>``.
    suggest
        Number of suggested next experiments for this run (sets ``ranking.suggest.n``).

    Returns
    -------
    CampaignResult
        Ranking, shortlist and validation tables, metrics and output paths.

    Raises
    ------
    MatscreenError
        If the spec is invalid (the message names the key at fault) or the run fails on
        bad input.
    """
    settings = Settings()
    path = _spec_file(spec, settings)
    load_spec(path, settings.data_dir)  # refuse a bad spec before starting any service
    result = execute_campaign(settings, path, Path(output_dir) if output_dir else None, suggest)
    files = result["files"]
    seconds = {**result["step_seconds"], "total": result["total_seconds"]}
    return CampaignResult(
        run_id=result["run_id"],
        output_dir=Path(result["output_dir"]),
        ranking=pd.read_csv(files["ranking.csv"]["path"]),
        shortlist=pd.read_csv(files["shortlist.csv"]["path"]),
        validation=_csv(files, "validation.csv"),
        metrics=result["metrics"],
        files=files,
        suggestions=_csv(files, "suggestions.csv"),
        seconds=seconds,
    )
