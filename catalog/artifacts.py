"""Content-addressed artifact store: large files (Parquet tables, model files) by sha256.

Files live under ``root/ab/cdef…`` where ``abcdef…`` is the sha256 of their bytes. Writes go
to a temporary file first and are renamed into place, so a reader never sees half a file;
every read verifies the hash.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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
        """Store ``data`` if not yet stored and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path_for(digest)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)
        return digest

    def get_bytes(self, sha256: str) -> bytes:
        """Return the bytes of an artifact after checking them against their hash.

        Raises
        ------
        ArtifactError
            If the artifact is missing or its content does not match ``sha256``.
        """
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactError(f"artifact {sha256} is missing from {self.root}") from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ArtifactError(
                f"artifact {path} is corrupt: its sha256 is {actual}, expected {sha256}"
            )
        return data
