"""The ``matscreen`` command line: the user's entry to the flows and the catalog.

One module per command group: ``campaign`` (run, reproduce, export, deploy), ``ingest``,
``queries`` (lineage, impact, find, diff, show) and ``train`` (train, predict); ``verify``
adds its parser from its flow. ``app`` builds the parser and runs a command.
"""

from __future__ import annotations

from matscreen.flows.cli.app import build_parser, main
from matscreen.flows.cli.common import DEFAULT_SPEC
from matscreen.flows.settings import REPOSITORY_ROOT

__all__ = ["DEFAULT_SPEC", "REPOSITORY_ROOT", "build_parser", "main"]
