"""The candidate half of a campaign, screened chunk by chunk in bounded memory.

A campaign's candidates may number millions (every decoration of a few prototypes over
much of the periodic table), so they are never held all at once. Each ``screen`` source
is read as a stream, and every chunk of ``screen.chunk_size`` records goes through the
same steps, overlapping with its neighbours:

1. repeats of an earlier record, and candidates that are the same crystal as a training
   record, are marked (the deduplicator keeps only ids and volumes of earlier chunks and
   reads a structure back from the catalog when a matcher needs one);
2. the chunk's records, failed rows and exclusions are written to the catalog;
3. features come from the feature store or are computed on the Dask workers (while they
   are, the next chunk is read and recorded);
4. every model predicts the chunk with its intervals; the predictions are recorded;
5. the candidates are placed against the convex hull when the campaign asks for stability,
   by a task on a worker while the next chunk is predicted; the candidates it cannot
   place are recorded when it is collected.

Only the chunk's light table (id, formula, source, predictions, intervals, hull columns)
is kept for the final ranking. When a source's read ends, its snapshot is recorded and
every record and failed row of the read is linked to it. Candidates of ``both`` sources,
read whole with the training pool and featurized with it, take the same steps 4 and 5.

A killed run resumes from what it stored. Every finished chunk of a streamed source is
kept (:mod:`~matscreen.catalog.checkpoints`) under a key naming its content, everything
read before it and the models (:mod:`~matscreen.tasks.chunk_keys`): a re-run that reaches
the same key takes the chunk's rows, failures and catalog ids from there, and tells the
deduplicator the structures it kept; the reader builds no record of a kept chunk of
prototype decorations. Of a chunk that
was under way, a re-run finds the records in the catalog and the feature rows in the store
by content, and the predictions of the same models (reused, as their training set is the
same) from the same feature table in the catalog. The kept chunks of a campaign are
removed when its run finishes (:meth:`CandidateScreen.forget`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Any

import pandas as pd
from prefect.utilities.annotations import opaque

from matscreen.catalog import Catalog
from matscreen.catalog.checkpoints import FinishedChunk
from matscreen.catalog.features import FeatureStore
from matscreen.catalog.prediction_recorder import PredictionRecorder
from matscreen.flows.featurize import PendingFeatures, record_features, start_featurization
from matscreen.flows.heap import return_free_memory
from matscreen.flows.placement import HullPlacement, PendingPlacement, start_placement
from matscreen.flows.resume import ScreenResume
from matscreen.flows.stream import ReadEnd, read_ahead
from matscreen.tasks.dataset import candidate_arrays, feature_failures, labels_of
from matscreen.tasks.errors import ScreenError
from matscreen.tasks.featurize import featurization_config
from matscreen.tasks.featurize.batch import ERROR_COLUMN
from matscreen.tasks.hashing import structure_hash
from matscreen.tasks.models.records import (
    PredictionRecord,
    kept_label,
    record_from_table,
    record_scalars,
)
from matscreen.tasks.pools import POOL_STAGE, Pools, TrainingMatcher
from matscreen.tasks.runinfo import RunInfo, utc_now
from matscreen.tasks.screen import PoolTable, ScreenedCandidates, TrainedModels, pool_table
from matscreen.tasks.sources.dedup import Deduplicator, kept_structures
from matscreen.tasks.sources.records import RecordFailure, StructureRecord
from matscreen.tasks.steps import predict_pool_task
from matscreen.tasks.tables import per_row_frame


class CandidateScreen:
    """Screens a campaign's candidates chunk by chunk (see the module's description).

    Parameters
    ----------
    spec
        The campaign spec.
    settings
        Where the catalog, stores and workers are.
    recorder
        Writes every chunk's records, features, predictions and exclusions.
    record_ids
        ``{record id: entity id}`` of the records read so far (training and ``both``
        sources); the streamed records are added to it.
    records
        The records read whole (training and ``both`` sources), by id.
    seen
        The deduplicator that marked the records read whole; it goes on with the stream.
    pools
        The pools of the records read whole (its training pool tells known candidates).
    trained
        The fitted models.
    hull
        How to place candidates against the hull; None without a stability section.
    timer
        Adds the seconds of each phase (ingest, featurize, predict, stability).
    """

    def __init__(
        self,
        spec: Any,
        settings: Any,
        recorder: PredictionRecorder,
        record_ids: dict[str, str],
        records: Mapping[str, StructureRecord],
        seen: Deduplicator,
        pools: Pools,
        trained: TrainedModels,
        hull: HullPlacement | None,
        timer: Any,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.recorder = recorder
        self.record_ids = record_ids
        self.records = records
        self.seen = seen
        self.trained = trained
        self.hull = hull
        self.timer = timer
        self.pools = pools
        self.training = TrainingMatcher(pools.training)
        self.training_ids = {r.id for r in pools.training}
        self.result = ScreenedCandidates(PoolTable(pd.DataFrame(), {}))
        self._store: FeatureStore | None = None
        self._frames: list[pd.DataFrame] = []
        self._pending: tuple[PendingPlacement, FinishedChunk] | None = None
        self._resume = ScreenResume(spec, settings, recorder, trained.model_ids, record_ids, hull)

    # -- the two kinds of candidates --------------------------------------------------------
    def screen_featurized(
        self, candidates: Sequence[StructureRecord], features: pd.DataFrame, features_id: str
    ) -> None:
        """Screen candidates featurized with the training pool (``both`` sources)."""
        size = self.spec.screen.chunk_size
        for start in range(0, len(candidates), size):
            chunk = list(candidates[start : start + size])
            ids = [c.id for c in chunk if c.id in features.index]
            self._predict_and_place(chunk, features.loc[ids], features_id, FinishedChunk())

    def screen_stream(self, sources: Sequence[Any]) -> None:
        """Read, record and screen every streamed source, chunk by chunk.

        The chunks overlap: a child process reads the sources ahead of this one
        (:mod:`~matscreen.flows.stream`); while the workers featurize one chunk, this
        process deduplicates and records the next; then it predicts the first, whose hull
        placement a worker computes while the next chunk is predicted. A chunk that an
        earlier run of the campaign finished is taken as that run kept it.
        """
        from tqdm import tqdm

        size = self.spec.screen.chunk_size
        state_dir = self.settings.source_state_dir
        progress = tqdm(desc="screen", unit=" candidates", disable=None, mininterval=2)
        with progress as bar, closing(self._resume):
            self._resume.open()
            stream = read_ahead(sources, state_dir, size, self._resume.start())
            self._screen_chunks(sources, stream, bar)

    def _screen_chunks(self, sources: Sequence[Any], stream: Any, bar: Any) -> None:
        """Screen the chunks ``stream`` reads (see :meth:`screen_stream`)."""
        pending: tuple[list[StructureRecord], FinishedChunk, PendingFeatures] | None = None
        entity_ids: list[str] = []
        with closing(stream):
            while True:
                with self.timer.step("ingest"):
                    started = utc_now()
                    item = next(stream, None)
                    if item is None:
                        break
                    if isinstance(item, ReadEnd):
                        run = _step_run("source-read", utc_now())
                        snapshot_id = self.recorder.source_read(item.snapshot, run, entity_ids)
                        self.result.snapshots.append(item.snapshot)
                        self.result.snapshot_ids.append(snapshot_id)
                        entity_ids = []
                        continue
                    source = sources[item.source]
                    kept = self._resume.take(item.key)
                    if item.planned and kept is None:  # the reader skips only chunks held
                        raise ScreenError(f"chunk {item.key} was not read, and is not kept")
                    chunk = kept or FinishedChunk(item.key)
                    candidates = []
                    if kept is None:
                        candidates = self._ingest(
                            source, item.records, item.failures, started, chunk
                        )
                        self.seen.release()
                    entity_ids += chunk.entity_ids
                submitted = None
                if candidates:
                    with self.timer.step("featurize"):
                        submitted = (candidates, chunk, self._start_features(candidates))
                else:
                    # Chunks are added in the order read: the ones before are finished first.
                    if pending is not None:
                        self._finish(*pending)
                        pending = None
                    self._place_pending()
                    if kept is not None:
                        self._take(kept)
                    else:
                        self._commit(chunk)
                if pending is not None:
                    self._finish(*pending)
                pending = submitted
                self.result.chunks += 1
                bar.update(len(item.records) + len(item.failures) + item.planned)
            if pending is not None:
                self._finish(*pending)
            with self.timer.step("stability"):
                self._place_pending()  # the last chunk is finished, and kept, here

    def _start_features(self, candidates: list[StructureRecord]) -> PendingFeatures:
        if self._store is None:
            config = featurization_config(self.spec.featurization)
            self._store = FeatureStore(self.settings.feature_dir, config)
        return start_featurization(
            candidates,
            self.spec.featurization,
            self._store,
            self.settings.worker_count,
            self.settings.featurizer_memory_mb,
        )

    def _finish(
        self, candidates: list[StructureRecord], chunk: FinishedChunk, pending: PendingFeatures
    ) -> None:
        """Collect and record a chunk's features, then predict and place it."""
        with self.timer.step("featurize"):
            table, features_id, _ = record_features(
                pending, candidates, self.spec.featurization, self.recorder, self.record_ids
            )
        failed = feature_failures(candidates, table)
        chunk.failures += failed
        chunk.counts.update(feature_failures=len(failed), featurized=len(table.frame))
        self._predict_and_place(candidates, table.frame, features_id, chunk)

    def _take(self, kept: FinishedChunk) -> None:
        """Take a chunk an earlier run finished: the structures it kept go to the
        deduplicator, its rows and ids to the screen."""
        self.seen.remember(kept.kept_structures)
        self.record_ids.update(kept.record_ids)
        kept.counts.update(records_resumed=kept.counts["records"] + kept.counts["ingest_failures"])
        kept.counts.pop("predictions_reused", None)
        self._commit(kept, keep=False)

    # -- one chunk --------------------------------------------------------------------------
    def _ingest(
        self,
        source: Any,
        records: list[StructureRecord],
        failures: list[RecordFailure],
        started: str,
        chunk: FinishedChunk,
    ) -> list[StructureRecord]:
        """Mark repeats, record the chunk, set aside known candidates; return the rest."""
        records = [self.seen.add(record) for record in records]
        chunk.kept_structures = kept_structures(records)
        recorded = self.recorder.ingest_chunk(
            source.name,
            self.result.chunks,
            records,
            failures,
            _step_run("ingest-chunk", started),
            self.record_ids,
        )
        self.record_ids.update(recorded.record_ids)
        chunk.record_ids = recorded.record_ids
        chunk.entity_ids = list(recorded.record_ids.values()) + list(recorded.error_ids)
        fresh = [r for r in records if r.duplicate_of is None]
        known = self.training.known(fresh)
        # A repeat of a training record is known as well (and counted as a repeat).
        repeats = sum(r.duplicate_of in self.training_ids for r in records)
        duplicates = sum(r.duplicate_of is not None for r in records)
        excluded = [
            RecordFailure(
                r.source,
                r.source_id,
                r.row,
                POOL_STAGE,
                f"already in the training pool as {known[r.id]} (the same crystal up to its "
                "lattice scale); its label is known",
            )
            for r in records
            if r.id in known
        ]
        self.recorder.exclusions(excluded, _step_run("pool", started), self.record_ids)
        candidates = [r for r in fresh if r.id not in known]
        chunk.counts.update(
            records=len(records),
            duplicates=duplicates,
            ingest_failures=len(failures),
            known_candidates=len(known) + repeats,
            excluded=len(known),
            candidate_pool=len(candidates),
        )
        chunk.failures += list(failures) + excluded
        return candidates

    def _predict_and_place(
        self,
        candidates: list[StructureRecord],
        features: pd.DataFrame,
        features_id: str,
        chunk: FinishedChunk,
    ) -> None:
        if features.empty:
            self._place_pending()  # chunks are added in the order read
            self._commit(chunk)
            return
        by_id = {c.id: c for c in candidates}
        columns = list(features.columns)
        ids = [i for i in by_id if i in features.index]
        with self.timer.step("predict"):
            predictions = self._stored_predictions(features_id, ids, candidates, chunk)
            futures = {
                target: predict_pool_task.submit(
                    opaque(f.model),
                    opaque(columns),
                    opaque(candidate_arrays(features, labels_of(candidates, target), ids)),
                    len(f.model.train_ids),
                )
                for target, f in self.trained.fitted.items()
                if target not in predictions
            }
            for target, future in futures.items():
                done = future.result()
                predictions[target] = done.value
                _, prediction_id = self.recorder.applied_model(
                    self.trained.fitted[target].model,
                    per_row_frame(done.value),
                    done.run,
                    features_id,
                    self.trained.model_ids[target],
                    scalars=record_scalars(done.value),
                )
                chunk.prediction_ids.append(prediction_id)
            table = pool_table(by_id, predictions, trained_on=self.trained.train_ids)
        if self.hull is None:
            self._add(table, chunk)
            return
        with self.timer.step("stability"):
            # This chunk is placed on a worker while the next one is read and predicted.
            # (Should that fail, the run fails; the placement under way is not waited for.)
            self._place_pending()
            placement = start_placement(table, by_id, self.hull, self.spec.stability)
            self._pending = (placement, chunk)

    def _stored_predictions(
        self,
        features_id: str,
        ids: list[str],
        candidates: list[StructureRecord],
        chunk: FinishedChunk,
    ) -> dict[str, PredictionRecord]:
        """The predictions of these rows that an earlier run of the same models on the
        same feature table recorded (a killed run's finished chunks), by target; with the
        labels the candidates have now (a source may have changed a reported value)."""
        found: dict[str, PredictionRecord] = {}
        for target, model_id in self.trained.model_ids.items():
            stored = self.recorder.stored_predictions(model_id, features_id)
            if stored is None:
                continue
            prediction_id, table, scalars = stored
            if [str(i) for i in table.index] != ids:
                continue
            labels = labels_of(candidates, target)
            found[target] = replace(
                record_from_table(target, table, scalars),
                y_true=[kept_label(labels[i]) for i in ids],
            )
            chunk.prediction_ids.append(prediction_id)
        if found and len(found) == len(self.trained.model_ids):
            chunk.counts.update(predictions_reused=len(ids))
        return found

    def _place_pending(self) -> None:
        """Wait for the placement of the previous chunk; record its failures, keep its rows."""
        if self._pending is None:
            return
        placement, chunk = self._pending
        table, run = placement.result()
        self._pending = None
        if run is not None:
            self.recorder.exclusions(table.failures, run, self.record_ids)
        self._add(table, chunk)

    def _add(self, table: PoolTable, chunk: FinishedChunk) -> None:
        """The chunk's table is made: the chunk is finished."""
        chunk.frame, chunk.levels, chunk.left_out = table.frame, table.levels, table.failures
        self._commit(chunk)

    def _commit(self, chunk: FinishedChunk, keep: bool = True) -> None:
        """Add a finished chunk to the screen; with ``keep``, keep it for a re-run."""
        result = self.result
        levels = chunk.levels or result.table.levels
        result.table = PoolTable(result.table.frame, levels, result.table.failures + chunk.left_out)
        self._frames.append(chunk.frame)
        return_free_memory()  # what the chunk's work freed
        result.failures += chunk.failures
        result.counts.update(chunk.counts)
        result.prediction_ids += chunk.prediction_ids
        if keep:
            self._resume.keep(chunk)

    def forget(self) -> None:
        """Remove the chunks kept for a re-run (the campaign's run has finished)."""
        self._resume.forget()

    # -- the end ----------------------------------------------------------------------------
    def finish(self) -> ScreenedCandidates:
        """Gather the chunks' tables into one; refuse a screen left with nothing to rank.

        Raises
        ------
        ScreenError
            If no candidate was predicted: naming the candidate sources and what became
            of their records.
        """
        with self.timer.step("stability"):
            self._place_pending()
        self.seen.forget()  # no record follows to be compared
        frames = [f for f in self._frames if not f.empty]
        self._frames = []  # the one table made of them replaces them
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        del frames
        return_free_memory()
        self.result.table = PoolTable(frame, self.result.table.levels, self.result.table.failures)
        if frame.empty:
            counts = self.result.counts
            pools = self.pools
            known = len(pools.known) + counts["known_candidates"]
            failed = counts["feature_failures"] + len(self.result.table.failures)
            raise ScreenError(
                f"nothing to screen: of the records of the candidate sources "
                f"({', '.join(pools.screen_sources)}), {known} already known as training "
                f"records, {counts['duplicates']} repeats, {counts['ingest_failures']} "
                f"unreadable, {failed} failed to featurize or to be placed; see the catalog's "
                "record errors (matscreen find) for each one's reason"
            )
        return self.result

    def features(
        self, ids: Sequence[str], featurized: pd.DataFrame, config: dict[str, Any]
    ) -> pd.DataFrame:
        """Feature rows of these candidates (indexed by id): from the campaign's table
        ``featurized`` where there, else from the feature store by structure hash."""
        inside = [i for i in ids if i in featurized.index]
        outside = [i for i in ids if i not in featurized.index]
        parts = [featurized.loc[inside]]
        if outside:
            structures = self.structures(outside)
            keys = {i: structure_hash(structures[i]) for i in outside}
            store = FeatureStore(self.settings.feature_dir, config)
            rows = store.lookup(keys.values()).drop(columns=[ERROR_COLUMN])
            parts.append(
                rows.loc[[keys[i] for i in outside]].set_axis(pd.Index(outside, name="id"))
            )
        return pd.concat(parts).loc[list(ids)]

    def structures(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Structure dicts of these records: from memory, or from the catalog."""
        return structures_of(ids, self.records, self.record_ids, self.recorder.catalog)


def structures_of(
    ids: Sequence[str],
    records: Mapping[str, StructureRecord],
    record_ids: Mapping[str, str],
    catalog: Catalog,
) -> dict[str, dict[str, Any]]:
    """Structure dicts of records held in memory or stored in the catalog."""
    out = {i: records[i].structure for i in ids if i in records}
    missing = [i for i in ids if i not in out]
    if missing:
        stored = catalog.get_entities([record_ids[i] for i in missing])
        by_entity = {e.id: e for e in stored}
        for i in missing:
            out[i] = by_entity[record_ids[i]].attributes["structure"]
    return out


def record_loader(
    records: Mapping[str, StructureRecord], record_ids: Mapping[str, str], catalog: Catalog
) -> Callable[[str], dict[str, Any]]:
    """``load(record id)`` -> its structure dict, for a deduplicator that released it."""
    return lambda record_id: structures_of([record_id], records, record_ids, catalog)[record_id]


def _step_run(name: str, started: str) -> RunInfo:
    """A run record for work the flow's driver did itself."""
    return RunInfo(name, started, utc_now(), socket.gethostname(), os.getpid(), None)
