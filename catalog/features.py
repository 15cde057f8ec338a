"""The feature store: computed feature rows cached on disk, by structure and featurization.

Rows are keyed by (structure hash, featurization hash), where the featurization hash covers
the featurizers, their parameters and the package versions. Each featurization has a
folder of Parquet part files; every write adds a new part under a unique name (written to
a temporary file and renamed), so concurrent runs never write the same file and a reader
never sees half a part. A part's name ends with the sha256 of its bytes, checked every
time the part is read; a part that fails the check (or cannot be parsed) is quarantined
(:mod:`matscreen.catalog.integrity`) and its rows count as not stored, so they are computed
again. A row may appear in several parts when two runs computed it at
once; the values are the same and the first one read is kept. Rows of structures that
failed hold the error message and NaN features, so a re-run does not retry them.

A store may hold millions of rows of hundreds of features, more than fits in memory: a
look-up reads only the structure-hash column of each part (once per part: parts never
change), then the rows asked for from the parts that hold them. Compaction merges only
small parts, so it never reads the whole store either.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from matscreen.catalog.integrity import quarantine
from matscreen.tasks.errors import CatalogError
from matscreen.tasks.featurize.batch import ERROR_COLUMN
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, content_hash
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame

log = logging.getLogger(__name__)

#: Small parts beyond this number are merged into one when a run finishes writing.
COMPACT_AFTER_PARTS = 16
#: A part of fewer rows than this is small (merged by :meth:`FeatureStore.compact`).
SMALL_PART_ROWS = 5000
#: Name of the key column (the structure hash) in every part.
KEY = "structure_hash"
#: A part's file name: ``part-<UTC time>-<sha256 of the file>.parquet``.
PART_NAME = re.compile(r"part-.+-(?P<sha256>[0-9a-f]{64})\.parquet")


class FeatureStore:
    """Cached feature rows of one featurization.

    Parameters
    ----------
    root
        Folder of the whole store (``$MATSCREEN_HOME/features``).
    config
        The featurization description; its hash names the folder.
    """

    def __init__(self, root: Path, config: dict[str, Any]) -> None:
        self.key = content_hash(config)
        self.folder = Path(root) / self.key
        self.folder.mkdir(parents=True, exist_ok=True)
        # The description is derived (the folder is named by its hash): a missing or damaged
        # one is written again.
        description = self.folder / "featurization.json"
        expected = canonical_json(config).encode()
        try:
            intact = description.read_bytes() == expected
        except OSError:
            intact = False
        if not intact:
            try:
                write_atomically(description, expected)
            except OSError as exc:  # a read-only store: its parts can still be read
                log.warning("cannot write %s (%s)", description, exc)
        self._indexed: dict[Path, int] = {}
        self._where: dict[str, Path] = {}

    @classmethod
    def in_folder(cls, folder: Path) -> FeatureStore:
        """The store of an existing featurization folder, to check its parts; unlike the
        constructor it needs no description and writes nothing."""
        store = cls.__new__(cls)
        store.key, store.folder = folder.name, Path(folder)
        store._indexed, store._where = {}, {}
        return store

    def _parts(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("part-*.parquet") if not p.is_dir())

    @staticmethod
    def _problem(part: Path, data: bytes) -> str | None:
        """What is wrong with a part's bytes (None if intact and readable)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        named = PART_NAME.fullmatch(part.name)
        if named is None:
            return "carries no checksum in its name"
        actual = hashlib.sha256(data).hexdigest()
        if actual != named["sha256"]:
            return f"is corrupt: its sha256 is {actual}"
        try:
            pq.read_metadata(pa.BufferReader(data))
        except (pa.ArrowException, ValueError) as exc:  # intact bytes no reader takes
            return f"cannot be read as Parquet ({exc})"
        return None

    def _verified(self, part: Path) -> bytes | None:
        """The bytes of a part if they are intact; else quarantine it and return None.

        Raises
        ------
        FileNotFoundError
            If the part is gone (merged away by a concurrent compaction).
        """
        data = part.read_bytes()
        problem = self._problem(part, data)
        if problem is None:
            return data
        quarantine(part, self.folder, problem)
        return None

    def _frame(self, part: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
        """A verified part as a frame (only ``columns`` if given); None if quarantined."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = self._verified(part)
        if data is None:
            return None
        if columns is not None:
            table = pq.read_table(pa.BufferReader(data), columns=columns)
            return table.to_pandas(ignore_metadata=True)
        return parquet_to_frame(data)

    def part_files(self) -> list[Path]:
        """The part files stored now."""
        return self._parts()

    def damaged_parts(self, repair: bool = False) -> list[tuple[Path, str, Path | None]]:
        """Every part that fails its checks: (part, problem, where it was moved) — moved
        into quarantine with ``repair`` (None if not asked, or if it could not be moved)."""
        found = []
        for part in self._parts():
            try:
                problem = self._problem(part, part.read_bytes())
            except FileNotFoundError:
                continue
            except OSError as exc:
                problem = f"cannot be read ({exc.strerror or exc})"
            if problem is not None:
                moved = quarantine(part, self.folder, problem) if repair else None
                found.append((part, problem, moved))
        return found

    def _forget(self, gone: set[Path]) -> None:
        self._indexed = {p: n for p, n in self._indexed.items() if p not in gone}
        self._where = {h: p for h, p in self._where.items() if p not in gone}

    def _refresh(self) -> None:
        """Index the structure hashes of parts not indexed yet; forget removed parts."""
        parts = self._parts()
        present = set(parts)
        self._forget({part for part in self._indexed if part not in present})
        for part in parts:
            if part in self._indexed:
                continue
            # A part merged away by a concurrent compaction raises FileNotFoundError: the
            # caller lists the parts again (the merged part holds its rows).
            frame = self._frame(part, columns=[KEY])
            if frame is None:
                continue
            keys = frame[KEY].tolist()
            for key in keys:
                self._where.setdefault(key, part)
            self._indexed[part] = len(keys)

    def _read_rows(self, wanted: list[str]) -> pd.DataFrame:
        by_part: dict[Path, list[str]] = {}
        for key in wanted:
            part = self._where.get(key)
            if part is not None:
                by_part.setdefault(part, []).append(key)
        frames = []
        for part, keys in sorted(by_part.items()):
            frame = self._frame(part)
            if frame is None:  # quarantined since indexed: its rows are computed again
                self._forget({part})
                continue
            frame = frame[~frame.index.duplicated(keep="first")]
            frames.append(frame.loc[frame.index.intersection(keys)])
        return pd.concat(frames) if frames else pd.DataFrame()

    def lookup(self, hashes: Iterable[str]) -> pd.DataFrame:
        """Return the stored rows (features and ``_error``) of these structure hashes."""
        wanted = list(dict.fromkeys(hashes))
        # A concurrent compaction may remove a part between indexing and reading; its rows
        # are then in the merged part, so index again.
        for _ in range(5):
            try:
                self._refresh()
                return self._read_rows(wanted)
            except FileNotFoundError:
                continue
        raise CatalogError(f"feature store {self.folder} kept changing while being read")

    def __len__(self) -> int:
        """Number of distinct structure hashes stored."""
        self.lookup([])
        return len(self._where)

    def add(self, features: pd.DataFrame, failures: dict[str, str]) -> Path | None:
        """Store new rows: ``features`` indexed by structure hash, ``failures`` hash->message.

        Returns
        -------
        Path or None
            The part file written, or None if there was nothing to write.
        """
        return self.add_rows(stored_rows(features, failures))

    def add_rows(self, rows: pd.DataFrame) -> Path | None:
        """Store rows made by :func:`stored_rows` as one part; return it (None if empty)."""
        if rows.empty:
            return None
        data = frame_to_parquet(rows)
        stamp = utc_now().replace(":", "")
        path = self.folder / f"part-{stamp}-{hashlib.sha256(data).hexdigest()}.parquet"
        write_atomically(path, data)
        self._index(path, rows)
        return path

    def _index(self, part: Path, rows: pd.DataFrame) -> None:
        """Index a part this store wrote from the rows it wrote, without reading it back
        (its rows are verified when they are read, like every part's)."""
        for key in rows.index:
            self._where.setdefault(key, part)
        self._indexed[part] = len(rows)

    def compact(self) -> None:
        """Merge the small parts into one when there are many (safe alongside other runs).

        Parts of :data:`SMALL_PART_ROWS` rows or more stay as they are, so a compaction
        reads at most about ``COMPACT_AFTER_PARTS × SMALL_PART_ROWS`` rows per merge.
        """
        try:
            self._refresh()  # verifies every part and counts its rows
        except FileNotFoundError:  # another run is compacting
            return
        small = [part for part, rows in sorted(self._indexed.items()) if rows < SMALL_PART_ROWS]
        if len(small) <= COMPACT_AFTER_PARTS:
            return
        try:
            frames = [frame for frame in map(self._frame, small) if frame is not None]
        except FileNotFoundError:  # another run is compacting the same parts
            return
        if not frames:
            return
        frame = pd.concat(frames)
        frame = frame[~frame.index.duplicated(keep="first")]
        merged = self.add(
            frame.drop(columns=[ERROR_COLUMN]).loc[frame[ERROR_COLUMN].isna()],
            frame.loc[frame[ERROR_COLUMN].notna(), ERROR_COLUMN].to_dict(),
        )
        for part in small:
            part.unlink(missing_ok=True)
        self._forget(set(small))
        if merged is not None:  # its keys pointed at the merged parts
            self._index(merged, frame)


def stored_rows(features: pd.DataFrame, failures: dict[str, str]) -> pd.DataFrame:
    """Rows as the store keeps them: features as float64 and the ``_error`` column (None, or
    the message with NaN features), indexed by structure hash."""
    errors = pd.DataFrame(
        index=pd.Index(list(failures), name=features.index.name),
        columns=features.columns,
        dtype="float64",
    )
    frame = pd.concat([features.astype("float64"), errors])
    frame[ERROR_COLUMN] = [None] * len(features) + list(failures.values())
    frame.index.name = KEY
    return frame
