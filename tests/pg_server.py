"""A throw-away PostgreSQL server for the tests: started on loopback, stopped afterwards.

Uses the server binaries of Debian's postgresql package. When running as root the server
runs as the ``postgres`` user, as PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def server_binaries() -> Path | None:
    """The folder of initdb and pg_ctl, or None if PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server(folder: Path) -> Iterator[str]:
    """Run a PostgreSQL server with its data in ``folder``; yield a SQLAlchemy URL.

    Raises
    ------
    RuntimeError
        If PostgreSQL is not installed or does not start.
    """
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found (Debian package postgresql)")
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, user="postgres")
    data, port = folder / "data", _free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "matscreen")
    run(
        str(binaries / "pg_ctl"),
        "-D",
        str(data),
        "-w",
        "-l",
        str(folder / "server.log"),
        "-o",
        f"-h 127.0.0.1 -p {port} -k {folder}",
        "start",
    )
    try:
        run(
            str(binaries / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "matscreen",
            "catalog",
        )
        yield f"postgresql+psycopg://matscreen@127.0.0.1:{port}/catalog"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")


def fresh_database(url: str) -> str:
    """Create a new, empty database on the server of ``url``; return its URL."""
    import uuid

    import sqlalchemy

    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"
