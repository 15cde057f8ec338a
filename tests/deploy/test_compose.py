"""deploy/compose.yaml agrees with matscreen's settings and the README's "Scaling out".

No container engine runs here, so the file is loaded and checked, not started: the
Prefect worker's settings must parse as matscreen settings and point at the services that
the file defines, on the ports those services listen on.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

from matscreen.flows.settings import REPOSITORY_ROOT, Settings

DEPLOY = REPOSITORY_ROOT / "deploy"


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def _option(command: str, name: str) -> str:
    words = shlex.split(command)
    return words[words.index(name) + 1]


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> volume or host path (``source:target[:ro]``; a source may hold
    a ``${VAR:-default}`` with colons of its own)."""
    mounts = {}
    for volume in service.get("volumes", []):
        spec = volume.removesuffix(":ro").removesuffix(":rw")
        source, target = spec.rsplit(":", 1)
        mounts[target] = source
    return mounts


def test_services_present(services: dict) -> None:
    assert set(services) == {
        "postgres",
        "prefect-server",
        "dask-scheduler",
        "dask-worker",
        "prefect-worker",
    }


def test_worker_settings_are_matscreen_settings(
    services: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = services["prefect-worker"]["environment"]
    known = {f"MATSCREEN_{name.upper()}" for name in Settings.model_fields}
    assert {k for k in env if k.startswith("MATSCREEN_")} <= known
    for key, value in env.items():
        if key.startswith("MATSCREEN_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.home == Path("/var/lib/matscreen")
    assert "change-me" not in settings.catalog_url_for_display


def test_worker_points_at_the_services(services: dict) -> None:
    env = services["prefect-worker"]["environment"]
    # Dask: the scheduler service, on the port its command listens on.
    dask = urlsplit(env["MATSCREEN_DASK_ADDRESS"])
    scheduler = services["dask-scheduler"]
    assert dask.hostname == "dask-scheduler"
    assert dask.port == int(_option(scheduler["command"], "--port"))
    assert f"{dask.port}:{dask.port}" in scheduler["ports"]
    # Catalog: the postgres service, with its user, password and database.
    catalog = make_url(env["MATSCREEN_CATALOG_URL"])
    pg = services["postgres"]["environment"]
    assert catalog.drivername == "postgresql+psycopg" and catalog.host == "postgres"
    assert (catalog.username, catalog.password, catalog.database) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    # Prefect: the server service and port, for the Prefect worker and the Dask workers.
    server = services["prefect-server"]
    port = int(_option(server["command"], "--port"))
    for name in ("prefect-worker", "dask-worker"):
        api = urlsplit(services[name]["environment"]["PREFECT_API_URL"])
        assert (api.hostname, api.port, api.path) == ("prefect-server", port, "/api")
    # Prefect's own database lives on the same server, in the database the init script makes.
    prefect_db = make_url(server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"])
    assert prefect_db.host == "postgres" and prefect_db.password == pg["POSTGRES_PASSWORD"]
    init = (DEPLOY / "docker" / "create-prefect-db.sql").read_text()
    assert f"CREATE DATABASE {prefect_db.database}" in init


def test_workers_share_home_and_preload(services: dict) -> None:
    worker, runner = services["dask-worker"], services["prefect-worker"]
    home = runner["environment"]["MATSCREEN_HOME"]
    assert _mounts(runner)[home] == _mounts(worker)[home] == "matscreen-home"
    assert _mounts(runner)[runner["environment"]["MATSCREEN_DATA_DIR"]].endswith("shared/data}")
    assert _option(worker["command"], "--preload") == "matscreen.flows.dask_preload"
    assert _option(worker["command"], "--nthreads") == "1"
    # The key comes from the host's environment, never from the file.
    assert runner["environment"]["MP_API_KEY"] == "${MP_API_KEY:-}"


def test_readme_scaling_out_names_the_same_settings(services: dict) -> None:
    readme = (REPOSITORY_ROOT / "README.md").read_text()
    section = readme.split("## Scaling out", 1)[1].split("\n## ", 1)[0]
    env = services["prefect-worker"]["environment"]
    for key in env:
        if key.startswith(("MATSCREEN_", "PREFECT_")):
            assert key in section, key
    assert "docker compose -f deploy/compose.yaml up" in section
    assert "matscreen.flows.dask_preload" in section and "deploy/slurm/cluster.py" in section


def test_image_installs_every_package_folder() -> None:
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    pyproject = (REPOSITORY_ROOT / "pyproject.toml").read_text()
    folders = set(re.findall(r'^"matscreen\.\w+" = "(\w+)"$', pyproject, re.MULTILINE))
    assert folders == {"flows", "tasks", "catalog"}
    for folder in folders:
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "pip install --no-cache-dir -c constraints.txt ." in dockerfile
