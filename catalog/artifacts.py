"""Content-addressed artifact store: large files (Parquet tables, model files) by sha256.

Files live under ``root/ab/cdef…`` where ``abcdef…`` is the sha256 of their bytes. Writes go
to a temporary file first and are renamed into place, so a reader never sees half a file;
every read verifies the hash. A file that fails the check is quarantined (see
:mod:`matscreen.catalog.integrity`): the read fails naming it, and the next write of the
same content — a run computing it again — stores it anew.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from matscreen.catalog.integrity import QUARANTINE, file_sha256, quarantine
from matscreen.tasks.errors import ArtifactError
from matscreen.tasks.files import write_atomically


class ArtifactStore:
    """Files addressed by the sha256 of their content.

    Parameters
    ----------
    root
        Folder holding the artifacts; created if missing.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Return where the artifact with this hash is (or would be) stored."""
        return self.root / sha256[:2] / sha256[2:]

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` if not yet stored intact and return its sha256.

        A stored copy that no longer matches its hash is quarantined and replaced.
        """
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            problem = self.problem(digest)
            if problem is None:
                return digest
            self.quarantine(digest, problem)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)
        return digest

    def get_bytes(self, sha256: str) -> bytes:
        """Return the bytes of an artifact after checking them against their hash.

        Raises
        ------
        ArtifactError
            If the artifact is missing or its content does not match ``sha256`` (the file
            is then quarantined).
        """
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"artifact {sha256} is missing from {self.root}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            moved = quarantine(path, self.root, f"is corrupt: its sha256 is {actual}")
            raise ArtifactError(
                f"artifact {path} is corrupt: its sha256 is {actual}, expected {sha256}"
                + (
                    f"; moved to {moved}, a run that computes it again stores it anew"
                    if moved
                    else ""
                )
            )
        return data

    def problem(self, sha256: str) -> str | None:
        """Check one artifact without returning it: None if intact, else what is wrong."""
        path = self.path_for(sha256)
        try:
            actual = file_sha256(path)
        except FileNotFoundError:
            return "missing"
        except OSError as exc:  # a folder in its place, no read permission
            return f"unreadable ({exc.strerror or exc})"
        return None if actual == sha256 else f"corrupt (sha256 {actual})"

    def quarantine(self, sha256: str, problem: str) -> Path | None:
        """Move a bad artifact file out of the way; return where it went (None if it could
        not be moved: the warning says why)."""
        return quarantine(self.path_for(sha256), self.root, f"is {problem}")

    def problems_of(self, entities: Iterable[Any]) -> dict[str, str]:
        """Entity id -> what is wrong with its artifact file, for entities that name one
        (``artifact_sha256``) that is missing or corrupt. Nothing is moved."""
        found = {}
        for entity in entities:
            sha256 = entity.attributes.get("artifact_sha256")
            problem = self.problem(sha256) if sha256 else None
            if problem is not None:
                found[entity.id] = f"artifact {self.path_for(sha256)} is {problem}"
        return found

    def stored(self) -> Iterator[str]:
        """Yield the sha256 of every file in the store (by name; not checked)."""
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and folder.name != QUARANTINE and len(folder.name) == 2:
                for path in sorted(folder.iterdir()):
                    if not path.name.startswith("."):
                        yield folder.name + path.name
