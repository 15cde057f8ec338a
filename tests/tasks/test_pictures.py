"""Unit-cell pictures for the report: real PNGs, decoded and looked at pixel by pixel."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pymatgen.core import Lattice, Structure

from matscreen.tasks.errors import RecordError
from matscreen.tasks.report.pictures import cell_atoms, element_colours, structure_picture_png

SITES = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


def _cubic(a_site: str, b_site: str, a: float) -> Structure:
    return Structure(Lattice.cubic(a), [a_site, b_site, "O", "O", "O"], SITES)


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"))


def _has_colour(pixels: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool((np.abs(pixels.astype(int) - rgb).max(axis=2) <= 1).any())


def _rgb(symbol: str) -> tuple[int, int, int]:
    return tuple(round(c * 255) for c in element_colours()[symbol])


@pytest.fixture(scope="module")
def cmr_structure(perovskite_csv: Path) -> dict[str, Any]:
    """The first real CMR perovskite (TiOsNOF, a distorted cubic cell)."""
    csv.field_size_limit(1 << 26)
    with open(perovskite_csv, newline="") as handle:
        row = next(csv.DictReader(handle))
    return Structure.from_str(row["cif"], "cif").as_dict()


def test_a_cubic_perovskite_is_drawn_whole() -> None:
    counts = Counter(symbol for symbol, _ in cell_atoms(_cubic("Sr", "Ti", 3.9)))
    # Sr on all 8 corners, Ti in the centre, O on both faces of each of the 3 directions.
    assert counts == {"Sr": 8, "Ti": 1, "O": 6}
    positions = {tuple(np.round(p, 6)) for s, p in cell_atoms(_cubic("Sr", "Ti", 3.9)) if s == "Sr"}
    assert positions == {(x, y, z) for x in (0, 3.9) for y in (0, 3.9) for z in (0, 3.9)}
    # Coordinates outside [0, 1) are wrapped; 0.9999999 counts as the face at 0 (and 1).
    shifted = Structure(Lattice.cubic(4.0), ["Ti", "O"], [[-0.25, 0.5, 0.5], [0.9999999, 0.5, 0.5]])
    atoms = sorted((s, tuple(np.round(p, 4))) for s, p in cell_atoms(shifted))
    assert atoms == [("O", (0.0, 2.0, 2.0)), ("O", (4.0, 2.0, 2.0)), ("Ti", (3.0, 2.0, 2.0))]


@pytest.mark.parametrize("size", [220, 123, 401])
def test_the_png_decodes_at_the_asked_size(size: int) -> None:
    png = structure_picture_png(_cubic("Sr", "Ti", 3.905).as_dict(), size)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _pixels(png).shape == (size, size, 3)


def test_same_structure_same_bytes_and_different_structures_differ(cmr_structure) -> None:
    strontium = _cubic("Sr", "Ti", 3.905).as_dict()
    first = structure_picture_png(strontium)
    assert structure_picture_png(strontium) == first
    assert structure_picture_png(Structure.from_dict(strontium)) == first

    pictures = {
        "SrTiO3": _pixels(first),
        "BaZrO3": _pixels(structure_picture_png(_cubic("Ba", "Zr", 4.19).as_dict())),
        "TiOsNOF": _pixels(structure_picture_png(cmr_structure)),
    }
    names = list(pictures)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert (pictures[a] != pictures[b]).any(axis=2).mean() > 0.01, (a, b)
    # Atoms wear their element's colour: Sr's green and O's red, not Ba's green.
    assert _has_colour(pictures["SrTiO3"], _rgb("Sr"))
    assert _has_colour(pictures["SrTiO3"], _rgb("O"))
    assert not _has_colour(pictures["SrTiO3"], _rgb("Ba"))
    assert _has_colour(pictures["BaZrO3"], _rgb("Ba"))
    assert not _has_colour(pictures["BaZrO3"], _rgb("Sr"))
    for symbol in ("Ti", "Os", "N", "O", "F"):
        assert _has_colour(pictures["TiOsNOF"], _rgb(symbol)), symbol
    # The background stays white around the drawing.
    assert (pictures["SrTiO3"][0, :] == 255).all()


def test_unreadable_structures_and_tiny_sizes_are_refused() -> None:
    with pytest.raises(RecordError, match="candidate mp:1: unreadable structure dict"):
        structure_picture_png({"lattice": {}, "sites": []}, candidate_id="mp:1")
    with pytest.raises(RecordError, match="candidate structure: not a pymatgen structure dict"):
        structure_picture_png({"sites": []})
    with pytest.raises(ValueError, match="below 48 px"):
        structure_picture_png(_cubic("Sr", "Ti", 3.9).as_dict(), 20)
