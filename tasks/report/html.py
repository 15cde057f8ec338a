"""Render the campaign report as one self-contained HTML file (plots embedded as PNG)."""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jinja2
import markupsafe
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass(frozen=True)
class ReportContext:
    """Everything the report shows; plain data only."""

    campaign: str
    description: str
    run_id: str
    spec_sha256: str
    finished_at: str
    sources: list[dict[str, Any]]
    counts: dict[str, int]
    split: dict[str, Any]
    featurization: dict[str, Any]
    metrics: dict[str, dict[str, float | int]]
    units: dict[str, str]
    criteria: list[dict[str, Any]]
    funnel: list[tuple[str, int]]
    shortlist: list[dict[str, Any]]
    step_seconds: dict[str, float]
    software: dict[str, str]
    parity_png: dict[str, bytes] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    ranking_method: str = "probability"
    validation: dict[str, Any] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration_png: bytes | None = None
    expected_funnel: dict[str, float] = field(default_factory=dict)
    changes: dict[str, Any] | None = None
    ranking_order: dict[str, str] = field(default_factory=dict)
    properties: list[dict[str, Any]] = field(default_factory=list)
    model_settings: list[dict[str, Any]] = field(default_factory=list)
    suggestions: list[dict[str, Any]] | None = None
    suggest_settings: dict[str, Any] | None = None
    pools: dict[str, str] = field(default_factory=dict)
    retrospective: bool = True
    held_out_validation: dict[str, Any] | None = None
    pictures: list[dict[str, Any]] = field(default_factory=list)
    structure_files: dict[str, Any] | None = None

    @property
    def total_seconds(self) -> float:
        """Sum of the step times, exact whatever the order of the steps (``math.fsum``)."""
        return math.fsum(self.step_seconds.values())


def parity_plot_png(y_true: list[float], y_pred: list[float], target: str, unit: str) -> bytes:
    """Draw predicted against reported values on the held-out set; return PNG bytes."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.scatter(y_true, y_pred, s=9, alpha=0.55, edgecolors="none")
    values = list(y_true) + list(y_pred)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = 0.05 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="black", lw=0.8)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"reported {target} ({unit})")
    ax.set_ylabel(f"predicted {target} ({unit})")
    ax.set_title(f"{target}: held-out parity")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def calibration_plot_png(curves: dict[str, list[dict[str, float]]]) -> bytes:
    """Draw the held-out coverage of each model's intervals against the nominal level."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    ax.plot([0.4, 1.0], [0.4, 1.0], color="black", lw=0.8, label="calibrated")
    for target, rows in curves.items():
        ax.plot([r["level"] for r in rows], [r["coverage"] for r in rows], marker="o", label=target)
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("nominal coverage of the interval")
    ax.set_ylabel("held-out coverage")
    ax.set_title("interval calibration")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


#: Below this many true hits, recall and enrichment get a small-number caution.
FEW_TRUE_HITS = 5


def _utc(timestamp: str) -> str:
    """An ISO 8601 time as ``2026-11-21 10:42:37 UTC``; other text unchanged."""
    try:
        moment = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return str(timestamp)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _probability(value: Any) -> str:
    """A probability (or an acquisition) for a table cell: 3 decimals, or 2 significant
    digits below 0.001 so that small values stay distinguishable from 0."""
    if value is None or value != value:
        return "n/a"
    if value == 0 or abs(value) >= 0.001:
        return f"{value:.3f}"
    return f"{value:.1e}"


def _breakable(text: str, after: str = "/_") -> markupsafe.Markup:
    """``text``, escaped, with a line-break opportunity after each of the characters
    ``after``, so that a long path or property name wraps at its parts instead of
    widening its column."""
    escaped = str(markupsafe.escape(text))
    for character in after:
        escaped = escaped.replace(character, f"{character}<wbr>")
    return markupsafe.Markup(escaped)


def _number(value: Any, digits: int = 4) -> str:
    """A metric for a table cell: fixed digits, or n/a when missing or not finite."""
    if value is None or not isinstance(value, int | float) or value != value:
        return "n/a"
    return f"{value:.{digits}f}"


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("matscreen.tasks.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_ENVIRONMENT.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
_ENVIRONMENT.filters["num"] = _number
_ENVIRONMENT.filters["prob"] = _probability
_ENVIRONMENT.filters["utc"] = _utc
_ENVIRONMENT.filters["breakable"] = _breakable
_ENVIRONMENT.globals["FEW_TRUE_HITS"] = FEW_TRUE_HITS
#: The report's page (``templates/report.html.j2``; ``c`` is the ReportContext).
_TEMPLATE = _ENVIRONMENT.get_template("report.html.j2")


#: Records left out that the report lists per step (all of them are in the catalog).
SHOWN_FAILURES = 200


def render_report(context: ReportContext) -> str:
    """Return the report's HTML text."""
    return _TEMPLATE.render(c=context, shown_failures=SHOWN_FAILURES)
