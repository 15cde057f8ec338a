"""Small pictures of unit cells for the report: atoms and cell edges in a fixed oblique view.

Drawn with matplotlib's Agg canvas (no display, no pyplot state), so the same structure
always gives the same PNG bytes with one matplotlib version.
"""

from __future__ import annotations

import io
import itertools
import warnings
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from pymatgen.core import Element, Structure

from matscreen.tasks.report.handoff import read_structure

#: Drawn radius of an atom as a fraction of its empirical atomic radius.
RADIUS_SCALE = 0.4
#: Fractional distance from a cell face under which an atom is also drawn on the opposite face.
BOUNDARY_TOLERANCE = 1e-3
#: The view: turn about the c-axis direction (z) by AZIMUTH, then tilt by ELEVATION (degrees).
AZIMUTH = 20.0
ELEVATION = 18.0

_DPI = 100
_MIN_SIZE = 48
_FALLBACK_COLOUR = (0.6, 0.6, 0.6)
_FALLBACK_RADIUS = 1.5
_EDGE_COLOUR = "0.35"
_LEGEND_SHARE = 0.14


@lru_cache(maxsize=1)
def element_colours() -> dict[str, tuple[float, float, float]]:
    """Jmol's element colours as RGB in 0–1, read from the table pymatgen ships."""
    table = resources.files("pymatgen.vis").joinpath("ElementColorSchemes.yaml")
    scheme = yaml.safe_load(table.read_text(encoding="utf-8"))["Jmol"]
    return {symbol: tuple(c / 255 for c in rgb) for symbol, rgb in scheme.items()}


@cache
def _radius(symbol: str) -> float:
    try:
        element = Element(symbol)
    except ValueError:  # dummy species such as X
        return _FALLBACK_RADIUS
    radius = element.atomic_radius or element.atomic_radius_calculated
    return float(radius) if radius else _FALLBACK_RADIUS


def _symbol(site: Any) -> str:
    """The element of a site's majority species (``Sr`` for ``Sr2+``)."""
    specie = max(site.species.items(), key=lambda item: (item[1], str(item[0])))[0]
    element = getattr(specie, "element", None) or specie
    return str(getattr(element, "symbol", specie))


def cell_atoms(structure: Structure) -> list[tuple[str, np.ndarray]]:
    """Atoms to draw: every site wrapped into the cell, plus its images on the far faces.

    An atom within :data:`BOUNDARY_TOLERANCE` of a face is repeated on the opposite one,
    so a corner atom is drawn at all 8 corners and a face-centred one on both faces.

    Returns
    -------
    list
        (element symbol, Cartesian position in Å) pairs.
    """
    atoms = []
    for site in structure:
        frac = np.mod(site.frac_coords, 1.0)
        frac[frac > 1 - BOUNDARY_TOLERANCE] -= 1.0
        shifts = [(0.0, 1.0) if abs(f) < BOUNDARY_TOLERANCE else (0.0,) for f in frac]
        for shift in itertools.product(*shifts):
            position = structure.lattice.get_cartesian_coords(frac + np.array(shift))
            atoms.append((_symbol(site), position))
    return atoms


def _view_matrix() -> np.ndarray:
    """Rotation taking Cartesian coordinates to (screen x, depth, screen y)."""
    a, e = np.radians(AZIMUTH), np.radians(ELEVATION)
    turn = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    tilt = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return tilt @ turn


def _cell_edges(structure: Structure) -> list[tuple[np.ndarray, np.ndarray]]:
    corners = {
        c: structure.lattice.get_cartesian_coords(c) for c in itertools.product((0, 1), repeat=3)
    }
    return [
        (corners[c], corners[d])
        for c, d in itertools.combinations(corners, 2)
        if sum(x != y for x, y in zip(c, d, strict=True)) == 1
    ]


def structure_picture_png(
    structure: dict[str, Any] | Structure, size_px: int = 220, *, candidate_id: str = "structure"
) -> bytes:
    """A square PNG of a unit cell: atoms, cell edges and an element legend.

    Atoms are circles sized by their empirical atomic radius (times :data:`RADIUS_SCALE`),
    coloured by element (Jmol colours), drawn back to front in a fixed oblique view;
    atoms on faces, edges and corners are repeated on the opposite ones (see
    :func:`cell_atoms`).

    Parameters
    ----------
    structure
        A pymatgen Structure dict (or Structure).
    size_px
        Width and height of the picture in pixels.
    candidate_id
        Named in errors.

    Returns
    -------
    bytes
        The PNG file's content; equal inputs give equal bytes.

    Raises
    ------
    RecordError
        If ``structure`` is not a readable, ordered, non-empty structure (naming
        ``candidate_id``).
    ValueError
        If ``size_px`` is below 48.
    """
    if size_px < _MIN_SIZE:
        raise ValueError(f"picture size {size_px} px is below {_MIN_SIZE} px")
    cell = read_structure(candidate_id, structure)
    view = _view_matrix()
    center = cell.lattice.get_cartesian_coords([0.5, 0.5, 0.5])

    def project(point: np.ndarray) -> np.ndarray:
        return view @ (np.asarray(point) - center)

    figure = Figure(figsize=(size_px / _DPI, size_px / _DPI), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.02, _LEGEND_SHARE, 0.96, 0.98 - _LEGEND_SHARE))
    axes.set_axis_off()
    axes.set_aspect("equal", adjustable="box")

    colours = element_colours()
    atoms = [(s, project(p)) for s, p in cell_atoms(cell)]
    # Far atoms first (larger depth is further from the viewer); ties by position, symbol.
    atoms.sort(key=lambda a: (-round(a[1][1], 6), round(a[1][0], 6), round(a[1][2], 6), a[0]))
    points = []
    for depth, (symbol, p) in enumerate(atoms, start=1):
        radius = RADIUS_SCALE * _radius(symbol)
        colour = np.array(colours.get(symbol, _FALLBACK_COLOUR))
        axes.add_patch(
            Circle(
                (p[0], p[2]),
                radius,
                facecolor=colour,
                edgecolor=tuple(colour * 0.55),
                linewidth=0.5,
                zorder=2 + depth,
            )
        )
        highlight = (p[0] - 0.3 * radius, p[2] + 0.3 * radius)
        light = tuple(colour * 0.5 + 0.5)
        axes.add_patch(Circle(highlight, 0.3 * radius, facecolor=light, lw=0, zorder=2 + depth))
        points += [(p[0] - radius, p[2] - radius), (p[0] + radius, p[2] + radius)]
    for start, end in _cell_edges(cell):
        a, b = project(start), project(end)
        # Edges behind the cell's centre go under the atoms, the others over them.
        front = (a[1] + b[1]) / 2 < 0
        axes.plot(
            [a[0], b[0]],
            [a[2], b[2]],
            color=_EDGE_COLOUR,
            linewidth=0.8,
            zorder=3 + len(atoms) if front else 1,
            solid_capstyle="round",
        )
        points += [(a[0], a[2]), (b[0], b[2])]
    xy = np.array(points)
    low, high = xy.min(axis=0), xy.max(axis=0)
    margin = 0.04 * float((high - low).max())
    axes.set_xlim(low[0] - margin, high[0] + margin)
    axes.set_ylim(low[1] - margin, high[1] + margin)

    symbols = sorted({s for s, _ in atoms}, key=_legend_order)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=6,
            markerfacecolor=colours.get(s, _FALLBACK_COLOUR),
            markeredgecolor=tuple(np.array(colours.get(s, _FALLBACK_COLOUR)) * 0.55),
            markeredgewidth=0.5,
            label=s,
        )
        for s in symbols
    ]
    figure.legend(
        handles=handles,
        loc="lower center",
        ncol=min(len(handles), 5),
        fontsize=7,
        frameon=False,
        handletextpad=0.1,
        columnspacing=0.8,
        borderaxespad=0.2,
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _legend_order(symbol: str) -> tuple[float, str]:
    """Elements by electronegativity, as in a formula (Sr, Ti, O); unknown ones last."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # noble gases have no Pauling electronegativity
            x = Element(symbol).X
    except ValueError:
        return (float("inf"), symbol)
    return (x if x == x else float("inf"), symbol)
