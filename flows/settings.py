"""matscreen's environment configuration: one settings class, variables prefixed MATSCREEN_."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The repository this module was installed from (an editable install or a checkout).
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


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
    """

    model_config = SettingsConfigDict(env_prefix="MATSCREEN_", extra="ignore")

    home: Path = Path(".matscreen")
    data_dir: Path = REPOSITORY_ROOT.parent / "shared" / "data"
    catalog_url: str = ""
    dask_address: str = ""
    dask_workers: int = Field(default=0, ge=0)
    dask_memory_limit: str = "auto"
    featurizer_memory_mb: int = Field(default=4096, ge=0)

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.catalog_url:
            self.catalog_url = f"sqlite:///{self.home / 'catalog.sqlite'}"
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
    def feature_dir(self) -> Path:
        """Folder of the feature store (cached feature rows)."""
        return self.home / "features"

    @property
    def worker_count(self) -> int:
        """Number of LocalCluster workers to start."""
        return self.dask_workers or os.cpu_count() or 1
