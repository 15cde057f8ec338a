"""The finished chunks of a screen that has not finished yet, so that a killed run resumes.

A campaign screens its streamed candidates chunk by chunk. For every chunk it finishes it
keeps here what the chunk added to the screen: its table (predictions, intervals, hull
columns), its failed and excluded records, its counts, and the catalog ids of its records
and prediction sets. A re-run of the campaign that reads the same chunk again, after the
same earlier chunks and with the same models (the same key, see
:mod:`~matscreen.tasks.chunk_keys`), takes the chunk
from here instead of recording, featurizing, predicting and placing it again.

Each chunk is two files named by its key: ``<key>.parquet`` (the table) and ``<key>.json``
(the sha256 of the rest on its first line, then the rest as canonical JSON, with the sha256
of the table file), written in that order through a temporary file and a rename; the JSON
file's presence means the chunk is complete. Both digests are checked when a chunk is
read: a chunk that fails the check is moved to ``quarantine/`` and screened again. The
files are a resume cache, not a record: the catalog holds every entity they name (the
screen checks that it still does before it takes a chunk), and a campaign's chunks are
removed when its run finishes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from matscreen.catalog.integrity import quarantine
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, sha256_text
from matscreen.tasks.sources.records import RecordFailure
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame

log = logging.getLogger(__name__)

#: Changes when the files' layout changes (older chunks are then not read).
LAYOUT = 2


@dataclass
class FinishedChunk:
    """What one chunk added to a screen.

    Attributes
    ----------
    key
        The chunk's key (:mod:`~matscreen.tasks.chunk_keys`; None: the chunk is not kept,
        e.g. candidates of a source read whole).
    frame, levels, left_out
        The chunk's rows of the candidate table, the coverage level of each property's
        interval, and the candidates left out of the table (no hull distance).
    failures
        Failed rows, known candidates set aside, structures that failed to featurize.
    counts
        The chunk's share of :attr:`ScreenedCandidates.counts`.
    prediction_ids
        The prediction sets of the chunk's candidates.
    record_ids, entity_ids
        ``{record id: entity id}`` of the chunk's records, and the entity ids of its
        records and failed rows (linked to the source's snapshot when the read ends).
    kept_structures
        What the deduplicator holds of the chunk's records it kept
        (:func:`~matscreen.tasks.sources.dedup.kept_structures`), so that a re-run can
        compare later records with them without the records themselves.
    """

    key: str | None = None
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    levels: dict[str, float] = field(default_factory=dict)
    left_out: list[RecordFailure] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    prediction_ids: list[str] = field(default_factory=list)
    record_ids: dict[str, str] = field(default_factory=dict)
    entity_ids: list[str] = field(default_factory=list)
    kept_structures: list[list[Any]] = field(default_factory=list)


class ChunkCheckpoints:
    """The finished chunks of one screen, in ``root/<campaign>/<fingerprint>``.

    A run holds a lock on its folder (``<fingerprint>.lock`` beside it) from :meth:`open`
    until :meth:`close` or :meth:`clear`: a second run of the same screen at the same time
    keeps and takes no chunk (with a warning), and a finished run removes only the folders
    no running screen holds.

    Parameters
    ----------
    root
        The folder of every campaign's kept chunks.
    campaign
        The campaign's name (a spec name: letters, digits, ``.``, ``_``, ``-``).
    fingerprint
        What the screen depends on besides its chunks (the sha256 of the spec, the models,
        the records read before the stream ...): a run with another spec or other models
        keeps its chunks apart.
    """

    def __init__(self, root: Path, campaign: str, fingerprint: str) -> None:
        self.campaign_folder = Path(root) / campaign
        self.folder = self.campaign_folder / fingerprint[:32]
        self._lock: Any = None
        self._usable = False

    def open(self) -> None:
        """Take the screen's lock; without it (another run holds it, or the folder cannot be
        made) no chunk is kept or taken, with one warning."""
        if self._lock is not None:
            return
        try:
            self.campaign_folder.mkdir(parents=True, exist_ok=True)
            self._lock = _try_lock(self.folder.with_suffix(".lock"))
        except OSError as exc:
            log.warning("finished chunks cannot be kept in %s (%s)", self.folder, exc)
            return
        if self._lock is None:
            log.warning(
                "another run of this campaign is screening the same candidates now: this "
                "run keeps no finished chunk in %s and takes none",
                self.folder,
            )
            return
        self._usable = True

    def close(self) -> None:
        """Release the lock (the chunks stay for a re-run)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        self._usable = False

    def save(self, chunk: FinishedChunk) -> None:
        """Keep a finished chunk (a chunk without a key is not kept). A chunk that cannot be
        written (a full disk ...) is not kept, with one warning: a re-run screens it again."""
        if chunk.key is None or not self._usable:
            return
        try:
            self._write(chunk)
        except (OSError, ValueError, TypeError) as exc:
            self._usable = False
            log.warning(
                "finished chunks cannot be kept in %s (%s): a re-run of this campaign after "
                "it is stopped screens them again",
                self.folder,
                exc,
            )

    def _write(self, chunk: FinishedChunk) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        table = frame_to_parquet(chunk.frame)
        write_atomically(self.folder / f"{chunk.key}.parquet", table)
        document = {
            "layout": LAYOUT,
            "frame_sha256": hashlib.sha256(table).hexdigest(),
            "levels": chunk.levels,
            "left_out": [asdict(f) for f in chunk.left_out],
            "failures": [asdict(f) for f in chunk.failures],
            "counts": chunk.counts,
            "prediction_ids": chunk.prediction_ids,
            "record_ids": chunk.record_ids,
            "entity_ids": chunk.entity_ids,
            "kept_structures": chunk.kept_structures,
        }
        text = canonical_json(document)
        # The first line is the sha256 of the rest, which is the canonical JSON itself.
        write_atomically(self.folder / f"{chunk.key}.json", f"{sha256_text(text)}\n{text}".encode())

    def keys(self) -> list[str]:
        """The keys of the chunks kept in this screen's folder (none while the screen does
        not hold its lock)."""
        if not self._usable or not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.json"))

    def load(self, key: str) -> FinishedChunk | None:
        """The finished chunk of this key; None if there is none, or if its files fail the
        check (they are then moved to ``quarantine/`` beside the campaigns, with a warning,
        and the chunk is screened again)."""
        path = self.folder / f"{key}.json"
        if not self._usable or not path.is_file():
            return None
        try:
            return self._read(key, path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            for suffix in (".json", ".parquet"):
                quarantine(
                    self.folder / f"{key}{suffix}",
                    self.campaign_folder.parent,
                    f"is a damaged finished chunk ({exc}); the chunk is screened again",
                )
            return None

    def _read(self, key: str, path: Path) -> FinishedChunk:
        digest, _, text = path.read_text(encoding="utf-8").partition("\n")
        if sha256_text(text) != digest:
            raise ValueError("its content does not match its sha256")
        document = json.loads(text)
        if document["layout"] != LAYOUT:
            raise ValueError(f"layout {document['layout']}, not {LAYOUT}")
        table = (self.folder / f"{key}.parquet").read_bytes()
        if hashlib.sha256(table).hexdigest() != document["frame_sha256"]:
            raise ValueError("its table does not match its sha256")
        return FinishedChunk(
            key=key,
            frame=parquet_to_frame(table),
            levels=_mapping(document["levels"], float, "levels"),
            left_out=[RecordFailure(**f) for f in document["left_out"]],
            failures=[RecordFailure(**f) for f in document["failures"]],
            counts=Counter(_mapping(document["counts"], int, "counts")),
            prediction_ids=_strings(document["prediction_ids"], "prediction_ids"),
            record_ids=_mapping(document["record_ids"], str, "record_ids"),
            entity_ids=_strings(document["entity_ids"], "entity_ids"),
            kept_structures=_kept_structures(document["kept_structures"]),
        )

    def clear(self) -> None:
        """Remove the kept chunks of the campaign that no running screen holds: this
        screen's, and those of earlier specs (its run has finished: nothing is left to
        resume). What cannot be removed is warned of; the lock is released."""
        try:
            for lock_path in sorted(self.campaign_folder.glob("*.lock")):
                own = lock_path == self.folder.with_suffix(".lock") and self._lock is not None
                handle = self._lock if own else _try_lock(lock_path)
                if handle is None:
                    continue  # another run is screening with these chunks
                try:
                    _remove(lock_path.with_suffix(""))
                    lock_path.unlink(missing_ok=True)
                finally:
                    if not own:
                        handle.close()
        except OSError as exc:
            log.warning("finished chunks left in %s: %s", self.campaign_folder, exc)
        finally:
            self.close()
        with contextlib.suppress(OSError):
            self.campaign_folder.rmdir()  # when no other screen's chunks are left


def _strings(value: Any, name: str) -> list[str]:
    """A read list of strings, checked (a wrong one is refused like a damaged file)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} is not a list of strings")
    return value


def _mapping(value: Any, kind: type, name: str) -> dict[str, Any]:
    """A read object of string keys and ``kind`` values, checked (for float: a number or
    null)."""

    def fits(v: Any) -> bool:
        if kind is float:
            return v is None or (isinstance(v, int | float) and not isinstance(v, bool))
        return isinstance(v, kind) and not isinstance(v, bool)

    if not isinstance(value, dict) or not all(
        isinstance(k, str) and fits(v) for k, v in value.items()
    ):
        raise TypeError(f"{name} is not an object of {kind.__name__} values")
    return value


def _kept_structures(value: Any) -> list[list[Any]]:
    """The deduplicator's entries of a read chunk, checked: ``[id, sha256, formula, volume]``
    each (a file whose digest is right but whose entries are not is refused like a damaged
    one)."""
    if not isinstance(value, list):
        raise TypeError("kept_structures is not a list")
    for entry in value:
        if not (
            isinstance(entry, list)
            and len(entry) == 4
            and all(isinstance(part, str) for part in entry[:3])
            and isinstance(entry[3], int | float)
            and entry[3] > 0
        ):
            raise ValueError(f"kept structure {entry!r} is not [id, sha256, formula, volume]")
    return value


def _try_lock(path: Path) -> Any:
    """An open file holding an exclusive lock on ``path``; None if another process holds it
    (or removed the file while this one waited for it: whoever locks it next makes a new
    one)."""
    handle = open(path, "a+b")  # noqa: SIM115 - held open as the lock
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(handle.fileno()).st_ino != os.stat(path).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        handle.close()
        return None
    except OSError:
        handle.close()
        raise
    return handle


def _remove(folder: Path) -> None:
    """Remove a folder of kept chunks; what cannot be removed is warned of once."""
    failed: list[str] = []
    shutil.rmtree(folder, onerror=lambda _f, path, exc: failed.append(f"{path}: {exc[1]}"))
    if failed and not (len(failed) == 1 and not folder.exists()):
        log.warning("finished chunks left in %s: %s", folder, failed[0])
