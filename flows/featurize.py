"""Featurization inside a flow: reuse stored rows, map tasks over the rest on Dask."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import unmapped
from prefect.futures import as_completed

from matscreen.catalog.features import FeatureStore, stored_rows
from matscreen.tasks.dataset import batches, mean_sites, unique_structures
from matscreen.tasks.featurize import batch_size_for, featurization_config
from matscreen.tasks.featurize.batch import (
    FeatureTable,
    batch_frame,
    pack_items,
    table_for_records,
)
from matscreen.tasks.runinfo import RunInfo
from matscreen.tasks.sources import StructureRecord
from matscreen.tasks.spec import FeaturizationSpec
from matscreen.tasks.steps import featurize_batch_task

#: Finished rows waiting to be stored together are stored once they are this many (a run
#: killed meanwhile loses no more).
STORE_AT_ROWS = 20_000


@dataclass
class PendingFeatures:
    """A featurization under way: the stored rows found, the batches submitted.

    :meth:`collect` waits for the batches and returns the table; in between, the flow's
    process is free (to read the next chunk of candidates).
    """

    keys: dict[str, str]
    stored: pd.DataFrame
    computing: int
    futures: list[Any]
    store: FeatureStore

    def collect(self) -> tuple[FeatureTable, list[RunInfo], int]:
        """Wait for the batches; return ``(FeatureTable, batch runs, structures taken from
        the store)``.

        Finished batches are stored together, as one part, until no other batch is
        finished or they hold :data:`STORE_AT_ROWS` rows: batches that are all finished when
        the flow gets to them (a streamed screen's, collected after the next chunk was
        read) make one part, and a batch that had to be waited for is stored as it
        arrives. So a run killed while the flow waits for a batch has stored the batches
        finished before; a failed batch's error is raised once the finished ones are
        stored.
        """
        runs: list[RunInfo] = []
        computed: list[pd.DataFrame] = [self.stored]
        waiting: list[pd.DataFrame] = []
        untaken = set(self.futures)

        def store_waiting() -> None:
            if waiting:
                rows = pd.concat(waiting) if len(waiting) > 1 else waiting[0]
                self.store.add_rows(rows)
                computed.append(rows)  # the rows as stored, without reading them back
                waiting.clear()

        def take(future: Any) -> None:
            untaken.discard(future)
            batch = future.result()
            waiting.append(stored_rows(batch_frame(batch.value), batch.value.failures))
            runs.append(batch.run)

        for future in as_completed(self.futures):
            try:
                take(future)
            except BaseException:
                for other in [f for f in untaken if _finished(f)]:
                    with suppress(Exception):  # a failure of its own is reported by a re-run
                        take(other)
                store_waiting()
                raise
            if sum(map(len, waiting)) >= STORE_AT_ROWS or not any(map(_finished, untaken)):
                store_waiting()
        store_waiting()
        stored = self.stored
        if self.computing:
            self.store.compact()
            stored = pd.concat([c for c in computed if not c.empty])
        table = table_for_records(self.keys, stored)
        return table, runs, len(set(self.keys.values())) - self.computing


def _finished(future: Any) -> bool:
    """Whether a task run's future has finished, without asking Prefect's API (the future
    of a Dask or thread task runner wraps a future that knows)."""
    wrapped = getattr(future, "wrapped_future", None)
    return wrapped is not None and wrapped.done()


def start_featurization(
    records: list[StructureRecord],
    featurization: FeaturizationSpec,
    store: FeatureStore,
    workers: int,
    memory_mb: int,
) -> PendingFeatures:
    """Look the records up in the store and submit the structures it lacks, in batches.

    Must run inside a flow: the missing structures are featurized by Prefect tasks mapped
    over batches on the flow's task runner (sized for ``workers`` workers). ``memory_mb``
    limits the heap of each featurizer child process (``MATSCREEN_FEATURIZER_MEMORY_MB``;
    0: none).
    """
    config = featurization_config(featurization)
    keys = {r.id: r.structure_sha256 for r in records}
    stored = store.lookup(keys.values())
    todo = unique_structures(records, keys, set(stored.index))
    size = featurization.batch_size or batch_size_for(
        config, mean_sites(records), len(todo), workers
    )
    futures = featurize_batch_task.map(
        [pack_items(batch) for batch in batches(todo, size)],
        unmapped(config),
        unmapped(featurization.time_limit_s),
        unmapped(memory_mb),
    )
    return PendingFeatures(keys, stored, len(todo), list(futures), store)


def featurize_records(
    records: list[StructureRecord],
    featurization: FeaturizationSpec,
    store: FeatureStore,
    workers: int,
    memory_mb: int,
) -> tuple[FeatureTable, list[RunInfo], int]:
    """Features of every record, computing only the structures the store lacks.

    Must run inside a flow (see :func:`start_featurization`); finished batches are stored
    before the flow waits for more (:meth:`PendingFeatures.collect`), so an interrupted run
    keeps what it computed.

    Returns
    -------
    (FeatureTable, batch runs, structures taken from the store)
    """
    return start_featurization(records, featurization, store, workers, memory_mb).collect()


def featurize_and_record(
    records: list[StructureRecord],
    featurization: FeaturizationSpec,
    settings: Any,
    recorder: Any,
    record_ids: dict[str, str],
) -> tuple[FeatureTable, str, int]:
    """Featurize records through the feature store and record the step in the catalog.

    Returns
    -------
    (FeatureTable, the feature table's entity id, structures taken from the store)
    """
    config = featurization_config(featurization)
    store = FeatureStore(settings.feature_dir, config)
    pending = start_featurization(
        records, featurization, store, settings.worker_count, settings.featurizer_memory_mb
    )
    return record_features(pending, records, featurization, recorder, record_ids)


def record_features(
    pending: PendingFeatures,
    records: list[StructureRecord],
    featurization: FeaturizationSpec,
    recorder: Any,
    record_ids: dict[str, str],
) -> tuple[FeatureTable, str, int]:
    """Collect a featurization and record the step in the catalog (the feature table, its
    batch runs, and the structures that failed as record errors).

    Returns
    -------
    (FeatureTable, the feature table's entity id, structures taken from the store)
    """
    from matscreen.tasks.dataset import feature_failures
    from matscreen.tasks.featurize import citations

    config = featurization_config(featurization)
    table, runs, reused = pending.collect()
    features_id = recorder.features(
        table,
        runs,
        config,
        citations(config),
        record_ids,
        failures=feature_failures(records, table),
        reused=reused,
    )
    return table, features_id, reused


def model_featurization(featurization: FeaturizationSpec) -> dict[str, Any]:
    """What a trained model keeps of its features: the spec and its resolved configuration.

    ``matscreen predict`` computes the same features for new structures from it.
    """
    return {
        "spec": featurization.model_dump(mode="json"),
        "config": featurization_config(featurization),
    }
