"""What the command groups share: the demo spec, argument types and number formatting."""

from __future__ import annotations

import argparse
from pathlib import Path

from matscreen.flows.settings import REPOSITORY_ROOT

DEFAULT_SPEC = REPOSITORY_ROOT / "deploy" / "campaigns" / "perovskite-water-splitting.yaml"


def number(value: float | None, digits: int) -> str:
    """A metric for printing: None or NaN (no labels, constant labels) shows as n/a."""
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def path_argument(text: str) -> Path:
    """A path argument; an empty one (which would mean the current folder) is refused."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a folder")
    return Path(text)


def at_least_one(text: str) -> int:
    """A count given on the command line: an integer of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value
