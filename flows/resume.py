"""Which chunks of a streamed screen an earlier, unfinished run of the campaign finished.

A chunk's result depends on its records, on every record read before it (the
deduplicator compares it with all of them), on the spec, the models, the software and
matscreen's own code, and on the hull's known phases. :class:`ScreenResume` gives the
reader of the sources the first key of a chain over all of these (the reader names each
chunk by its records, :func:`~matscreen.tasks.chunk_keys.chunk_key`, or, for a source that
plans its items such as prototype decorations, by its plans,
:func:`~matscreen.tasks.chunk_keys.plan_key`), keeps every finished chunk under its key,
and gives a re-run the chunks it finds once it has checked that the catalog still holds
the prediction sets and records they name and that their artifacts are intact. The reader
builds no record of a planned chunk that a re-run takes. A campaign whose hull takes
phases from the Materials Project keeps no chunk:
those phases, and the snapshots that record them, are read per chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matscreen.catalog.checkpoints import ChunkCheckpoints, FinishedChunk
from matscreen.catalog.prediction_recorder import PredictionRecorder
from matscreen.flows.runtime import git_commit
from matscreen.tasks.chunk_keys import ChunkKeys
from matscreen.tasks.hashing import code_sha256, content_hash, file_sha256

log = logging.getLogger(__name__)


def package_code() -> str | None:
    """A hash of matscreen's own code (every module of its flows, tasks and catalog), which
    a chunk's records and results depend on besides the software versions: a checkout with
    uncommitted edits, or an install outside git, keeps its chunks apart when the code
    changes. None when a module cannot be read."""
    import matscreen.catalog
    import matscreen.flows
    import matscreen.tasks

    packages = (matscreen.flows, matscreen.tasks, matscreen.catalog)
    return code_sha256(*(Path(str(package.__file__)).parent for package in packages))


class ScreenResume:
    """Keeps the finished chunks of a screen, and takes them back in a re-run.

    Parameters
    ----------
    spec, settings, recorder
        The campaign's spec, settings and recorder (its catalog, artifacts and software).
    model_ids
        The catalog id of each target's model.
    known
        ``{record id: entity id}`` of every record read before the stream (the training
        and ``both`` sources, excluded records included).
    hull
        The campaign's hull placement (None without a stability section).
    """

    def __init__(
        self,
        spec: Any,
        settings: Any,
        recorder: PredictionRecorder,
        model_ids: Mapping[str, str],
        known: Mapping[str, str],
        hull: Any,
    ) -> None:
        self.recorder = recorder
        stability = spec.stability
        # The Materials Project's phases are read, and recorded, per chunk: none is kept.
        self.keeps = stability is None or stability.mp is None
        reference_files = []
        if stability is not None:
            reference_files = [p for p in [stability.elements, *stability.entries] if p]
        self._code = package_code()
        self._key = content_hash(
            {
                "spec": spec.fingerprint(),
                "software": recorder.software,
                "commit": git_commit(),
                "code": self._code,
                "catalog": settings.catalog_url_for_display,
                "models": dict(model_ids),
                "read_before": sorted(known.items()),
                "known_phases": hull.training if hull is not None else None,
                "reference_files": [file_sha256(p) for p in reference_files],
            }
        )
        self.store = ChunkCheckpoints(settings.screen_state_dir, spec.name, self._key)
        self._kept: dict[str, FinishedChunk] = {}

    def open(self) -> None:
        """Start keeping chunks (see :meth:`ChunkCheckpoints.open`)."""
        if self.keeps:
            self.store.open()

    def close(self) -> None:
        """Stop keeping chunks (those kept stay for a re-run)."""
        self.store.close()

    def start(self) -> ChunkKeys | None:
        """How the reader names the chunks (None: chunks are not kept): from the screen's
        fingerprint, with the keys of the chunks an earlier run finished that the catalog
        still backs (each is checked and held here until :meth:`take`)."""
        if not self.keeps:
            return None
        for key in self.store.keys():
            kept = self._checked(key)
            if kept is not None:
                self._kept[key] = kept
        return ChunkKeys(self._key, frozenset(self._kept), plans=self._code is not None)

    def take(self, key: str | None) -> FinishedChunk | None:
        """The chunk an earlier run finished under this key (None: the chunk is screened)."""
        return self._kept.pop(key, None) if key is not None else None

    def _checked(self, key: str) -> FinishedChunk | None:
        """The kept chunk of this key, if its files are intact and the catalog still holds
        what it names; None otherwise."""
        kept = self.store.load(key)
        if kept is None:
            return None
        catalog = self.recorder.catalog
        named = set(kept.entity_ids) | set(kept.record_ids.values())
        predictions = catalog.get_entities(kept.prediction_ids)
        problems = self.recorder.artifacts.problems_of(predictions)
        whole = len(predictions) == len(set(kept.prediction_ids))
        if not whole or problems or catalog.existing_ids(list(named)) != named:
            log.warning(
                "finished chunk %s names catalog entries that are gone or damaged; it is "
                "screened again",
                key,
            )
            return None
        return kept

    def keep(self, chunk: FinishedChunk) -> None:
        """Keep a finished chunk for a re-run."""
        if self.keeps:
            self.store.save(chunk)

    def forget(self) -> None:
        """Remove the campaign's kept chunks, of this screen and of earlier specs (its run
        has finished); a screen another run is using keeps its chunks."""
        self.store.clear()
