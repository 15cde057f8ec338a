"""matscreen's environment configuration: one settings class, variables prefixed MATSCREEN_."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from matscreen.tasks.errors import SettingsError

#: The repository this module was installed from (an editable install or a checkout).
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


#: Smallest memory limit of a Dask worker that can hold matscreen's imports and a batch.
_SMALLEST_WORKER_MEMORY = 128 * 2**20


class Settings(BaseSettings):
    """Where matscreen keeps and finds things.

    Attributes
    ----------
    home
        Folder for the default catalog and the artifact store (``MATSCREEN_HOME``).
    data_dir
        Folder with the embedded real data (``MATSCREEN_DATA_DIR``); campaign specs refer
        to it as ``${data_dir}``. Default: ``../shared/data`` next to the repository.
    catalog_url
        SQLAlchemy URL of the catalog (``MATSCREEN_CATALOG_URL``); default a SQLite file
        ``catalog.sqlite`` in ``home``.
    dask_address
        Address of an existing Dask scheduler (``MATSCREEN_DASK_ADDRESS``); empty starts a
        LocalCluster with one single-threaded worker process per core.
    dask_workers
        Worker count of that LocalCluster (``MATSCREEN_DASK_WORKERS``); 0 means one per core.
    dask_memory_limit
        Memory limit per LocalCluster worker (``MATSCREEN_DASK_MEMORY_LIMIT``), e.g. "4GiB".
    featurizer_memory_mb
        Heap limit of each featurizer child process in MiB
        (``MATSCREEN_FEATURIZER_MEMORY_MB``; 0: none). A structure whose featurization
        needs more gets an error row; the worker and the batch go on.

    Raises
    ------
    SettingsError
        If a variable's value is invalid (``MATSCREEN_DASK_WORKERS=many``, a catalog URL
        that is not a database URL or has a port that is not a number); the message names
        the variable, with any password in a URL masked.
    """

    model_config = SettingsConfigDict(env_prefix="MATSCREEN_", extra="ignore")

    home: Path = Path(".matscreen")
    data_dir: Path = REPOSITORY_ROOT.parent / "shared" / "data"
    catalog_url: str = ""
    dask_address: str = ""
    dask_workers: int = Field(default=0, ge=0)
    dask_memory_limit: str = "auto"
    featurizer_memory_mb: int = Field(default=4096, ge=0)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None

    @field_validator("dask_memory_limit")
    @classmethod
    def _memory_limit(cls, value: str) -> str:
        # As Dask reads it when it starts the workers: "auto", 0 (no limit), a fraction of
        # the machine's memory, or a size ("4GiB").
        from dask.utils import parse_bytes

        if value.strip().lower() in ("auto", "0", "none"):
            return value
        try:
            amount = float(value)
        except ValueError:
            try:
                amount = float(parse_bytes(value))
            except ValueError:
                amount = -1.0
        if not (0 < amount <= 1 or amount >= _SMALLEST_WORKER_MEMORY):
            raise ValueError(
                "give 'auto', 0 (no limit), a fraction of the memory such as 0.5, or a size "
                "of at least 128MiB such as 4GiB"
            )
        return value

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.home / 'catalog.sqlite'}"
        else:
            _check_catalog_url(self.catalog_url)
        return self

    @property
    def catalog_url_for_display(self) -> str:
        """The catalog URL with its password and secret query values masked, for messages
        and logs."""
        from matscreen.tasks.secrets import mask_url

        return mask_url(self.catalog_url)

    @property
    def artifact_dir(self) -> Path:
        """Folder of the content-addressed artifact store."""
        return self.home / "artifacts"

    @property
    def source_state_dir(self) -> Path:
        """Where remote sources keep fetched pages so that an interrupted read resumes."""
        return self.home / "sources"

    @property
    def screen_state_dir(self) -> Path:
        """Where a campaign keeps its finished chunks of candidates until its run finishes,
        so that a killed run resumes."""
        return self.home / "screens"

    @property
    def score_dir(self) -> Path:
        """Where the held-out scores of stored models are kept for the runs that reuse them."""
        return self.home / "scores"

    @property
    def feature_dir(self) -> Path:
        """Folder of the feature store (cached feature rows)."""
        return self.home / "features"

    @property
    def worker_count(self) -> int:
        """Number of LocalCluster workers to start."""
        return self.dask_workers or os.cpu_count() or 1


def _describe(exc: ValidationError) -> str:
    """One line naming every variable at fault, with its value (a catalog URL masked)."""
    from matscreen.tasks.secrets import mask_url

    problems = []
    for error in exc.errors():
        name = f"MATSCREEN_{str(error['loc'][0]).upper()}" if error["loc"] else "MATSCREEN_*"
        value = mask_url(str(error.get("input", "")))
        problems.append(f"{name}={value!r}: {error['msg']}")
    return "; ".join(problems)


def _check_catalog_url(url: str) -> None:
    """Refuse a catalog URL that SQLAlchemy cannot parse, before anything opens it.

    Raises
    ------
    SettingsError
        Naming MATSCREEN_CATALOG_URL and the URL with its password masked.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from matscreen.tasks.secrets import mask_url

    try:
        parsed = make_url(url)
        port = parsed.port
    except ArgumentError:
        reason = (
            "not a database URL (e.g. sqlite:////path/to/catalog.sqlite or "
            "postgresql+psycopg://user@host:5432/matscreen)"
        )
    except ValueError:
        reason = "the port is not a number"
    else:
        in_memory = parsed.drivername.startswith("sqlite") and parsed.database in (
            None,
            "",
            ":memory:",
        )
        if in_memory:
            reason = (
                "a catalog in memory keeps nothing: give a file, sqlite:////path/to/catalog.sqlite"
            )
        elif port is None or 0 < port < 65536:
            return
        else:
            reason = f"port {port} is out of range (1-65535)"
    # A malformed URL may hold a password with an unescaped "@": mask up to the last one.
    scheme, sep, rest = url.partition("://")
    user, colon, _ = rest.rpartition("@")[0].partition(":")
    shown = f"{scheme}{sep}{user}:***@{rest.rpartition('@')[2]}" if colon else url
    raise SettingsError(f"MATSCREEN_CATALOG_URL {mask_url(shown)}: {reason}")
