"""The flows that deploy/prefect.yaml deploys: what a Prefect worker runs on a schedule.

A worker runs a deployment's flow in a fresh process, without the ``matscreen`` command
around it, so these flows set up what the command would: the Dask cluster of the settings
(``MATSCREEN_DASK_ADDRESS``, else a LocalCluster for the run) as the campaign's task runner,
and campaign specs named relative to the repository. The work itself is the same flows
the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from prefect import flow

from matscreen.flows.settings import REPOSITORY_ROOT, Settings


def spec_path(spec: str) -> Path:
    """A spec named in a deployment's parameters: absolute, or relative to the repository."""
    path = Path(spec)
    return path if path.is_absolute() else REPOSITORY_ROOT / path


@flow(name="campaign")
def campaign(spec: str, output_dir: str | None = None) -> dict[str, Any]:
    """Run a screening campaign on the configured Dask cluster.

    Parameters
    ----------
    spec
        The campaign spec (YAML), absolute or relative to the repository.
    output_dir
        Where the outputs go; default ``runs/<run id>`` under the worker's directory.

    Returns
    -------
    dict
        The campaign flow's result (run id, outputs, metrics, step times).
    """

    from matscreen.flows.campaign import screen_candidates
    from matscreen.flows.runtime import dask_scheduler, dask_task_runner

    settings = Settings()
    with dask_scheduler(settings) as address:
        return screen_candidates.with_options(task_runner=dask_task_runner(address))(
            spec_path=str(spec_path(spec)), output_dir=output_dir
        )


@flow(name="refresh-sources")
def refresh_sources(spec: str, output: str | None = None) -> dict[str, Any]:
    """Read every source of a campaign spec into the catalog (e.g. a weekly MP refresh).

    Remote reads resume from, and add to, the pages kept under ``MATSCREEN_HOME/sources``;
    a database release that has not changed is read from there without asking the server.
    """
    from matscreen.flows.ingest import ingest_structures
    from matscreen.tasks.spec import load_spec

    loaded = load_spec(spec_path(spec), Settings().data_dir)
    return ingest_structures(
        sources=[source.model_dump(mode="json") for source in loaded.sources], output=output
    )


#: The deployments file this repository ships.
PREFECT_FILE = REPOSITORY_ROOT / "deploy" / "prefect.yaml"


def read_deployments(prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    """The ``deployments`` of a prefect.yaml file, each checked for what registering needs.

    Raises
    ------
    SpecError
        If the file is missing, not YAML, or a deployment lacks a name, an entrypoint or a
        work pool; the message names the file and the deployment.
    """
    import yaml

    from matscreen.tasks.errors import SpecError

    try:
        config = yaml.safe_load(Path(prefect_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"cannot read deployments from {prefect_file}: {exc}") from exc
    deployments = config.get("deployments") or []
    for i, deployment in enumerate(deployments):
        missing = [
            key
            for key, value in (
                ("name", deployment.get("name")),
                ("entrypoint", deployment.get("entrypoint")),
                ("work_pool.name", (deployment.get("work_pool") or {}).get("name")),
            )
            if not value
        ]
        if missing:
            raise SpecError(f"{prefect_file}: deployments.{i} lacks {', '.join(missing)}")
    return deployments


def register_deployments(
    prefect_file: Path = PREFECT_FILE, names: list[str] | None = None
) -> dict[str, str]:
    """Create or update the deployments of ``prefect_file`` on the Prefect server.

    This does what ``prefect deploy --all --prefect-file …`` does for these deployments —
    entrypoints taken relative to the repository, which the process worker runs them in,
    schedules, parameters, tags, work pool — through Prefect's Python API, without the
    prompts and the work-pool checks of the command line.

    Returns
    -------
    dict
        ``{deployment name: deployment id}``.

    Raises
    ------
    SpecError
        If ``names`` holds a deployment the file does not define.
    """
    from prefect import Flow
    from prefect.deployments.runner import DeploymentApplyError, RunnerDeployment
    from prefect.schedules import Cron

    from matscreen.tasks.errors import MatscreenError, SpecError

    deployments = read_deployments(prefect_file)
    known = {d["name"] for d in deployments}
    unknown = sorted(set(names or []) - known)
    if unknown:
        raise SpecError(f"{prefect_file} defines no deployment {unknown} (it has {sorted(known)})")
    chosen = [d for d in deployments if not names or d["name"] in names]
    ensure_work_pools({d["work_pool"]["name"] for d in chosen})
    registered = {}
    for deployment in chosen:
        # Called from synchronous code, Prefect's sync-or-async methods return their result.
        source = cast(
            Flow[..., Any],
            Flow.from_source(source=str(REPOSITORY_ROOT), entrypoint=deployment["entrypoint"]),
        )
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone", "UTC"))
            for s in deployment.get("schedules") or []
        ]
        runner: RunnerDeployment = source.to_deployment(  # type: ignore[assignment]
            name=deployment["name"],
            description=deployment.get("description"),
            parameters=deployment.get("parameters") or {},
            tags=deployment.get("tags") or [],
            schedules=schedules or None,
            work_pool_name=deployment["work_pool"]["name"],
            job_variables=deployment["work_pool"].get("job_variables") or {},
        )
        try:
            registered[deployment["name"]] = str(runner.apply())
        except DeploymentApplyError as exc:
            raise MatscreenError(f"deployment {deployment['name']}: {exc}") from exc
    return registered


def ensure_work_pools(names: set[str]) -> None:
    """Create each named work pool as a process pool if the server does not have it yet."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        for name in sorted(names):
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                try:
                    client.create_work_pool(WorkPoolCreate(name=name, type="process"))
                except ObjectAlreadyExists:  # a worker starting on it created it meanwhile
                    pass
