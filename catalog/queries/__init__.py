"""Provenance questions asked of the catalog: impact, runs, models, candidates, run diffs, show.

Each question is a plain function over a :class:`Catalog` returning small dataclasses, for
the command line and for scripts. Nodes are named by full id, by a unique id prefix of at
least 8 characters, or (entities) by name, e.g. the record name ``cmr_perovskites:16025``.

A *run* is a top-level activity (no parent): in a campaign, its ``flow_run``. An entity
belongs to the runs whose activities generated it or, having arrived at content already
stored, used it.

One module per question: ``nodes`` (naming nodes, the runs they belong to), ``impact``,
``runs`` (runs and models), ``candidates``, ``diff`` and ``show``.
"""

from __future__ import annotations

from matscreen.catalog.queries.candidates import (
    Candidate,
    candidate_rows,
    find_candidates,
    ranking_table,
)
from matscreen.catalog.queries.diff import (
    INPUT_KINDS,
    InputChange,
    RankMove,
    RunDiff,
    changes_since_previous,
    diff_runs,
)
from matscreen.catalog.queries.impact import (
    Impact,
    impact,
)
from matscreen.catalog.queries.nodes import (
    NodeRef,
    RunSummary,
    resolve,
)
from matscreen.catalog.queries.runs import (
    ModelSummary,
    find_models,
    find_runs,
    models_trained_as,
    previous_run,
)
from matscreen.catalog.queries.show import (
    Related,
    Shown,
    show,
    summarize,
)

__all__ = [
    "Candidate",
    "INPUT_KINDS",
    "Impact",
    "InputChange",
    "ModelSummary",
    "NodeRef",
    "RankMove",
    "Related",
    "RunDiff",
    "RunSummary",
    "Shown",
    "changes_since_previous",
    "diff_runs",
    "candidate_rows",
    "find_candidates",
    "ranking_table",
    "find_models",
    "find_runs",
    "impact",
    "previous_run",
    "resolve",
    "show",
    "models_trained_as",
    "summarize",
]
