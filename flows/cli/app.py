"""The ``matscreen`` command: its parser, and how an error or an interrupt ends it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from matscreen.flows.cli.campaign import add_campaign_parsers
from matscreen.flows.cli.ingest import add_ingest_parser
from matscreen.flows.cli.queries import add_lineage_parser, add_query_parsers
from matscreen.tasks.errors import MatscreenError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("matscreen")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``matscreen`` command."""
    parser = argparse.ArgumentParser(
        prog="matscreen", description="High-throughput screening of crystal structures."
    )
    parser.add_argument("--version", action="version", version=f"matscreen {_version()}")
    parser.add_argument(
        "--debug", action="store_true", help="show an error's traceback instead of one line"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the routine log lines of Prefect and Dask (task runs, servers) as well",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    add_campaign_parsers(commands)
    add_ingest_parser(commands)
    add_query_parsers(commands)
    from matscreen.flows.cli.train import add_train_parsers

    add_train_parsers(commands)
    from matscreen.flows.verify import add_verify_parser

    add_verify_parser(commands)

    add_lineage_parser(commands)
    completion = commands.add_parser(
        "completion",
        help="print a shell completion script (e.g. `matscreen completion bash > "
        "~/.local/share/bash-completion/completions/matscreen`)",
    )
    completion.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    completion.set_defaults(handler=lambda args: _print_completion(args.shell))
    return parser


def _print_completion(shell: str) -> int:
    """Print the completion script of the ``matscreen`` command for ``shell``: its
    commands, options and choices, made from the parser itself, and file names where an
    argument is a file or a folder."""
    import shtab

    parser = build_parser()
    _complete_paths(parser, shtab.FILE)
    print(shtab.complete(parser, shell=shell))
    return 0


#: Arguments that name a file or a folder, by destination (besides those of type Path).
PATH_ARGUMENTS = frozenset(
    {"spec", "path", "prototype", "input", "output", "outputs", "out", "model", "prefect_file"}
)


def _complete_paths(parser: argparse.ArgumentParser, files: Any) -> None:
    """Have every file or folder argument of ``parser`` and its subcommands complete file
    names (argparse keeps the actions and subcommands in these attributes)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                _complete_paths(command, files)
        elif action.type is Path or action.dest in PATH_ARGUMENTS:
            action.complete = files  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """Run the ``matscreen`` command; return its exit status.

    An error matscreen raises on purpose (bad input, a setting, an output folder) is one
    line on stderr and exit status 2; with ``--debug`` it is raised, with its traceback.
    Ctrl-C ends with one line and exit status 130, SIGTERM with one line and 143 (a
    campaign run is recorded as ``interrupted`` either way).
    """
    args = build_parser().parse_args(argv)
    from matscreen.flows.runtime import quiet_console, quiet_own_errors, termination_signal

    if not args.debug:
        quiet_own_errors()
    if not (args.verbose or args.debug):
        quiet_console()
    try:
        return int(args.handler(args))
    except MatscreenError as exc:
        if args.debug:
            raise
        print(f"matscreen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("matscreen: interrupted", file=sys.stderr)
        return 130
    except termination_signal():  # SIGTERM, as Prefect raises it in a flow
        if args.debug:
            raise
        print("matscreen: terminated", file=sys.stderr)
        return 143
    except OSError as exc:  # the machine's: a full disk, a file-size limit, a lost mount
        if args.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"matscreen: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        # Ctrl-C reaches the Prefect server and the Dask workers too (one process group):
        # Prefect, recording the interrupted flow on a server that has just stopped,
        # raises a connection error in place of the KeyboardInterrupt.
        if args.debug or not _caused_by_interrupt(exc):
            raise
        print("matscreen: interrupted", file=sys.stderr)
        return 130


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while a KeyboardInterrupt was being handled."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
