"""Checks of stored bytes: content hashes, and moving a bad file out of a store's way.

A file whose bytes no longer match the hash it was stored under is *quarantined*: moved
into the store's ``quarantine/`` folder (kept for inspection, never read again) and named
in a warning. The store then behaves as if the file had never been written, so the next
run that needs its content computes it again and stores it anew.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from matscreen.tasks.runinfo import utc_now

log = logging.getLogger(__name__)

#: Name of the folder, inside a store, that holds quarantined files.
QUARANTINE = "quarantine"

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Return the sha256 of a file's bytes, read in chunks.

    Raises
    ------
    OSError
        If the file cannot be read (FileNotFoundError if it is gone).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def quarantine(path: Path, store_root: Path, reason: str) -> Path | None:
    """Move a bad file into ``store_root/quarantine/`` and warn; return where it went.

    Returns None when the file was already gone (another process moved or removed it) or
    cannot be moved (a read-only store: it stays, and is never used).
    """
    folder = Path(store_root) / QUARANTINE
    stamp = utc_now().replace(":", "")
    target = folder / f"{Path(path).name}.{stamp}.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("%s %s; it cannot be moved to %s (%s)", path, reason, folder, exc)
        return None
    log.warning(
        "%s %s; moved to %s (its content is computed again when needed)", path, reason, target
    )
    return target
