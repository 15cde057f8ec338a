"""Writing files so that a reader sees either the whole file or none of it, and checking
before any work that an output folder takes files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from matscreen.tasks.errors import OutputFolderError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def open_atomically(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is renamed to ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched. The file
    gets the permissions a new file normally gets (0666 less the umask), not the
    owner-only mode of the temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    stored = False
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        stored = True
    finally:
        if not stored:
            Path(tmp).unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    with open_atomically(path) as handle:
        handle.write(data)


def apart_from(output: Path, inputs: dict[str, Path], home: Path) -> None:
    """Refuse an output folder that holds an input of the run or lies in matscreen's home.

    A run writes fixed file names (``ranking.csv`` …) into its output folder: a source
    file there could be overwritten by the very run that reads it, and outputs inside the
    home would mix with the stores ``matscreen verify`` checks.

    Raises
    ------
    OutputFolderError
        Naming the output folder and the input (or the home) it collides with.
    """
    out = Path(output).expanduser().resolve()
    for name, given in inputs.items():
        source = Path(given).expanduser().resolve()
        if source == out or out in source.parents:
            raise OutputFolderError(
                f"output folder {output}: it holds {given}, which {name} reads (the run's "
                "files could overwrite it); choose another folder"
            )
    home = Path(home).expanduser().resolve()
    if out == home or home in out.parents:
        raise OutputFolderError(
            f"output folder {output}: it is inside matscreen's home {home}; choose another"
        )


def writable_folder(path: Path) -> Path:
    """Create the output folder ``path`` if needed and check that files can be written in it.

    Commands call this before any work, so that a run does not end, after hours, on a
    folder it cannot write. A probe file is written into the folder and removed.

    Parameters
    ----------
    path
        The output folder (it may exist; its parents are created as needed).

    Returns
    -------
    Path
        ``path``, which now exists and takes new files.

    Raises
    ------
    OutputFolderError
        If ``path`` or one of its parents is a file, or the folder cannot be created or
        written (permissions, read-only file system); the message is
        ``output folder PATH: reason``.
    """
    path = Path(path).expanduser()
    for ancestor in (path, *path.parents):
        if ancestor.is_dir():
            break
        if ancestor.exists() or ancestor.is_symlink():
            what = "a file" if ancestor.exists() else "a broken symbolic link"
            where = "it" if ancestor == path else str(ancestor)
            raise OutputFolderError(f"output folder {path}: {where} is {what}, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".matscreen-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OutputFolderError(f"output folder {path}: cannot write there ({reason})") from exc
    return path
