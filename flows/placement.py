"""Placing a campaign's candidates against the convex hull of the known phases.

A chunk's placement is submitted to the flow's task runner and collected later, so the
flow's process goes on with the next chunk meanwhile (:func:`start_placement`);
:func:`place_on_hull` is the same, waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from prefect.futures import PrefectFuture
from prefect.utilities.annotations import opaque

from matscreen.tasks.models.stability import reference_phases, shared_texts
from matscreen.tasks.runinfo import RunInfo, traced
from matscreen.tasks.screen import PoolTable, chemical_system, hull_inputs, with_hull
from matscreen.tasks.sources.records import StructureRecord
from matscreen.tasks.spec import HULL_PROPERTY
from matscreen.tasks.steps import hull_task


@dataclass
class HullPlacement:
    """How candidates are placed against the convex hull (a campaign's ``stability``).

    Attributes
    ----------
    stability
        The campaign's stability section.
    training
        The labelled training records as known phases (formula, energy per atom, id).
    required
        Whether a criterion names the hull distance (a candidate without one then fails).
    level
        Coverage level of the formation-energy model's interval.
    state_dir
        Where a Materials Project read of reference phases keeps its pages.
    on_read
        Called with every read of reference phases (``Traced``) that holds source
        snapshots (the Materials Project), so that the campaign records them.
    """

    stability: Any
    training: list[tuple[str, float, str]]
    required: bool
    level: float | None
    state_dir: Path
    on_read: Callable[[Any], None] | None = None
    _fixed: Any = field(default=None, init=False, repr=False)

    def phases(self, systems: set[str]) -> Any:
        """The reference phases for candidates of these chemical systems (read again only
        when the Materials Project is asked: its phases depend on the systems)."""
        if self._fixed is not None:
            return self._fixed
        read = traced(reference_phases)(self.stability, self.training, systems, self.state_dir)
        if read.value.snapshots and self.on_read is not None:
            self.on_read(read)
        if self.stability.mp is None:
            self._fixed = read.value
        return read.value


class _Where(NamedTuple):
    """What a candidate left without a hull distance needs to become a record failure."""

    source: str
    source_id: str
    row: int


@dataclass
class PendingPlacement:
    """A chunk's hull placement under way on a worker (see :func:`start_placement`).

    ``predicted`` and ``reported`` are the futures of the hull tasks of the predicted and
    of the reported formation energies (None: no task, the pool table is empty or has no
    reported energies).
    """

    table: PoolTable
    predicted: PrefectFuture[Any] | None
    reported: PrefectFuture[Any] | None
    where: dict[str, _Where]
    hull: HullPlacement

    def result(self) -> tuple[PoolTable, RunInfo | None]:
        """Wait for the placement: the pool table with its hull columns, and the run of the
        worker's task (None for an empty table).

        Raises
        ------
        ModelError
            If the worker could not read the phases (see
            :func:`~matscreen.tasks.models.stability.hull_stability`).
        """
        if self.predicted is None:
            return self.table, None
        done = self.predicted.result()
        placed, failures = done.value
        placed = shared_texts(placed)  # each chunk's texts would otherwise be new copies
        if self.reported is not None:
            # The reported formation energies, placed against the same hull, are the true
            # hull distances the screening validation compares the ranking with.
            truth, _ = self.reported.result().value
            placed = placed.merge(
                truth[["id", f"pred_{HULL_PROPERTY}"]].rename(
                    columns={f"pred_{HULL_PROPERTY}": f"reported_{HULL_PROPERTY}"}
                ),
                on="id",
                how="left",
            )
        table = with_hull(
            self.table, placed, failures, self.where, self.hull.required, self.hull.level
        )
        return table, done.run


def start_placement(
    table: PoolTable,
    by_id: Mapping[str, StructureRecord],
    hull: HullPlacement,
    stability: Any,
) -> PendingPlacement:
    """Submit the placement of a pool table's candidates against the convex hull to the
    flow's task runner: their predicted hull distances with intervals and, where the pool
    has reported formation energies, those placed too.

    The flow's process meanwhile goes on with the next chunk. The workers get the phases
    without the hulls this process may have cached, so no process keeps a hull for the
    chemical system of every candidate.
    """
    where = {i: _Where(r.source, r.source_id, r.row) for i, r in by_id.items()}
    if table.frame.empty:
        return PendingPlacement(table, None, None, where, hull)
    energy = stability.formation_energy
    systems = {chemical_system(by_id[i].formula) for i in table.frame["id"]}
    phases = replace(hull.phases(systems))
    rows, atoms = hull_inputs(table.frame, energy, by_id, stability.per)
    predicted = hull_task.submit(opaque(rows), opaque(phases), opaque(atoms))
    truth_rows, truth_atoms = hull_inputs(table.frame, energy, by_id, stability.per, reported=True)
    reported = None
    if truth_rows:
        reported = hull_task.submit(opaque(truth_rows), opaque(phases), opaque(truth_atoms))
    return PendingPlacement(table, predicted, reported, where, hull)


def place_on_hull(
    table: PoolTable,
    by_id: Mapping[str, StructureRecord],
    hull: HullPlacement,
    stability: Any,
) -> PoolTable:
    """Add the hull-stability columns to a pool table (:func:`start_placement`, waited for)."""
    return start_placement(table, by_id, hull, stability).result()[0]
