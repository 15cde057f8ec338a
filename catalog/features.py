"""The feature store: computed feature rows cached on disk, by structure and featurization.

Rows are keyed by (structure hash, featurization hash), where the featurization hash covers
the featurizers, their parameters and the package versions. Each featurization has a
folder of Parquet part files; every write adds a new part under a unique name (written to
a temporary file and renamed), so concurrent runs never write the same file and a reader
never sees half a part. A row may appear in several parts when two runs computed it at
once; the values are the same and the first one read is kept. Rows of structures that
failed hold the error message and NaN features, so a re-run does not retry them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from matscreen.tasks.errors import CatalogError
from matscreen.tasks.featurize.batch import ERROR_COLUMN
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import canonical_json, content_hash
from matscreen.tasks.runinfo import utc_now
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame

#: Parts beyond this number are merged into one when a run finishes writing.
COMPACT_AFTER_PARTS = 16


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
        description = self.folder / "featurization.json"
        if not description.exists():
            write_atomically(description, canonical_json(config).encode())

    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def _read_all(self) -> tuple[pd.DataFrame, list[Path]]:
        # A concurrent compaction may remove a part between listing and reading; its rows
        # are then in the merged part, so list again.
        for _ in range(5):
            parts = self._parts()
            try:
                frames = [parquet_to_frame(part.read_bytes()) for part in parts]
            except FileNotFoundError:
                continue
            if not frames:
                return pd.DataFrame(), parts
            frame = pd.concat(frames)
            return frame[~frame.index.duplicated(keep="first")], parts
        raise CatalogError(f"feature store {self.folder} kept changing while being read")

    def lookup(self, hashes: Iterable[str]) -> pd.DataFrame:
        """Return the stored rows (features and ``_error``) of these structure hashes."""
        wanted = list(dict.fromkeys(hashes))
        frame, _ = self._read_all()
        if frame.empty:
            return frame
        return frame.loc[frame.index.intersection(wanted)]

    def add(self, features: pd.DataFrame, failures: dict[str, str]) -> Path | None:
        """Store new rows: ``features`` indexed by structure hash, ``failures`` hash->message.

        Returns
        -------
        Path or None
            The part file written, or None if there was nothing to write.
        """
        if features.empty and not failures:
            return None
        errors = pd.DataFrame(
            index=pd.Index(list(failures), name=features.index.name),
            columns=features.columns,
            dtype="float64",
        )
        frame = pd.concat([features.astype("float64"), errors])
        frame[ERROR_COLUMN] = [None] * len(features) + list(failures.values())
        frame.index.name = "structure_hash"
        path = self.folder / f"part-{utc_now().replace(':', '')}-{uuid.uuid4().hex[:8]}.parquet"
        write_atomically(path, frame_to_parquet(frame))
        return path

    def compact(self) -> None:
        """Merge the parts into one when there are many (safe alongside other runs)."""
        frame, parts = self._read_all()
        if len(parts) <= COMPACT_AFTER_PARTS:
            return
        self.add(
            frame.drop(columns=[ERROR_COLUMN]).loc[frame[ERROR_COLUMN].isna()],
            frame.loc[frame[ERROR_COLUMN].notna(), ERROR_COLUMN].to_dict(),
        )
        for part in parts:
            part.unlink(missing_ok=True)
