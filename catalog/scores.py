"""Held-out scores of a model kept for the next run that scores the same model again.

A run that reuses a stored model (same training set, spec and software) scores it again on
its held-out rows. Its predictions and metrics take a moment; its baselines, permutation
importance and calibration curve take most of a training step (a random-forest baseline
and a few thousand predictions). Those three are kept here, one file per
:func:`~matscreen.tasks.models.evaluation.scores_key`: the key names the model, the
training and held-out rows and their features, the scoring parameters and the scoring
code, so a file is only ever taken for exactly the evaluation that made it.

Each file is ``<key>.json``: the sha256 of the rest on its first line, then the rest as
JSON (NaN kept as NaN), written through a temporary file and a rename. The digest is
checked when the file is read; a file that fails the check is moved to ``quarantine/``
and the scores are computed again. The folder is a cache, not a record: removing it costs
one scoring per model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from matscreen.catalog.integrity import quarantine
from matscreen.tasks.files import write_atomically
from matscreen.tasks.hashing import sha256_text
from matscreen.tasks.models.evaluation import HeldOutScores

log = logging.getLogger(__name__)

#: Changes when the files' layout changes (older files are then not read).
LAYOUT = 1


class ScoreCache:
    """Held-out scores by key, in ``folder`` (made when first written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def get(self, key: str | None) -> HeldOutScores | None:
        """The scores kept under ``key``; None if there are none (or no key), or if the
        file fails its check (it is then quarantined, with a warning)."""
        if key is None:
            return None
        path = self.folder / f"{key}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("kept held-out scores %s cannot be read (%s): scored again", path, exc)
            return None
        try:
            return _parse(data.decode("utf-8"))
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is a ValueError
            quarantine(path, self.folder, f"holds damaged held-out scores ({exc})")
            return None

    def put(self, key: str | None, scores: HeldOutScores) -> None:
        """Keep ``scores`` under ``key`` (nothing without a key). A file that cannot be
        written (a full disk, a read-only home) is not kept, with one warning."""
        if key is None:
            return
        document = {
            "layout": LAYOUT,
            "baselines": scores.baselines,
            "importance": scores.importance,
            "calibration": scores.calibration,
        }
        try:
            text = json.dumps(document, sort_keys=True, separators=(",", ":"), default=_plain)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomically(self.folder / f"{key}.json", f"{sha256_text(text)}\n{text}".encode())
        except (OSError, TypeError, ValueError) as exc:
            log.warning("held-out scores cannot be kept in %s (%s)", self.folder, exc)


def _parse(text: str) -> HeldOutScores:
    digest, _, body = text.partition("\n")
    if sha256_text(body) != digest:
        raise ValueError("its content does not match its sha256")
    document = json.loads(body)
    if document["layout"] != LAYOUT:
        raise ValueError(f"layout {document['layout']}, not {LAYOUT}")
    parts = [document[name] for name in ("baselines", "importance", "calibration")]
    if not all(
        isinstance(part, list) and all(isinstance(row, dict) for row in part) for part in parts
    ):
        raise TypeError("baselines, importance and calibration must be lists of objects")
    return HeldOutScores(*parts)


def _plain(value: Any) -> Any:
    """numpy scalars as the Python numbers they hold (json knows only the latter)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
