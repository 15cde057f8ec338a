"""Render the campaign report as one self-contained HTML file (plots embedded as PNG)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import jinja2
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


def _number(value: Any, digits: int = 4) -> str:
    """A metric for a table cell: fixed digits, or n/a when missing or not finite."""
    if value is None or not isinstance(value, int | float) or value != value:
        return "n/a"
    return f"{value:.{digits}f}"


_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENVIRONMENT.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
_ENVIRONMENT.filters["num"] = _number
_TEMPLATE = _ENVIRONMENT.from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>matscreen report: {{ c.campaign }} ({{ c.run_id }})</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}
th{background:#f2f2f2}
td.l,th.l{text-align:left}
.ok{color:#176d2a;font-weight:600}
code{font-size:0.9em}
figure{display:inline-block;margin:0 1em 1em 0}
</style></head><body>
<h1>{{ c.campaign }}</h1>
<p>{{ c.description }}</p>
<p>Run <code>{{ c.run_id }}</code>, finished {{ c.finished_at }}; spec sha256
<code>{{ c.spec_sha256 }}</code>.</p>

{% if c.changes %}{% set d = c.changes %}
<h2>Changes since the previous run</h2>
<p>Compared with run <code>{{ d.previous_run }}</code> (started {{ d.previous_started_at }}):
{{ d.new_candidates.count }} new and {{ d.dropped_candidates.count }} dropped candidates;
{{ d.new_hits.count }} new hits{% if d.new_hits.ids %}
({{ d.new_hits.ids[:10] | join(", ") }}){% endif %},
{{ d.dropped_hits.count }} dropped hits{% if d.dropped_hits.ids %}
({{ d.dropped_hits.ids[:10] | join(", ") }}){% endif %};
{{ d.moved }} candidates changed rank, {{ d.unchanged }} kept it.</p>
{% if d.moves %}
<table><tr><th class="l">largest rank moves</th><th>rank before</th><th>rank now</th>
<th>move</th></tr>
{% for m in d.moves[:10] %}<tr><td class="l">{{ m.id }}</td><td>{{ m.rank_a }}</td>
<td>{{ m.rank_b }}</td><td>{{ "%+d" % m.delta }}</td></tr>{% endfor %}
</table>
{% endif %}
{% if d.inputs %}<p>Inputs that differ:
{% for i in d.inputs %}{{ i.kind }} ({{ i.only_previous }} only before, {{ i.only_this_run }} only
now){% if not loop.last %}; {% endif %}{% endfor %}.</p>{% endif %}
{% endif %}

<h2>Summary</h2>
<table>
<tr><th class="l">records read</th><td>{{ c.counts.records }}</td></tr>
<tr><th class="l">records that failed to read</th><td>{{ c.counts.ingest_failures }}</td></tr>
<tr><th class="l">duplicates of an earlier record (linked, not used twice)</th>
<td>{{ c.counts.duplicates }}</td></tr>
<tr><th class="l">structures that failed to featurize</th>
<td>{{ c.counts.feature_failures }}</td></tr>
<tr><th class="l">training / held-out records</th>
<td>{{ c.split.n_train }} / {{ c.split.n_test }}</td></tr>
<tr><th class="l">candidates ranked</th><td>{{ c.counts.candidates }}</td></tr>
<tr><th class="l">candidates meeting every criterion</th><td>{{ c.counts.hits }}</td></tr>
</table>

<h2>Data sources</h2>
<table>
<tr><th class="l">source</th><th class="l">kind</th><th class="l">file or endpoint</th>
<th class="l">database version</th><th class="l">sha256</th><th>records</th>
<th class="l">licence</th><th class="l">cite</th></tr>
{% for s in c.sources %}
<tr><td class="l">{{ s.source }}</td><td class="l">{{ s.kind }}</td>
<td class="l"><code>{{ s.location }}</code></td><td class="l">{{ s.database_version }}</td>
<td class="l"><code>{{ s.sha256[:16] }}…</code></td><td>{{ s.n_rows }}</td>
<td class="l">{{ s.licence }}</td><td class="l">{{ s.citation | join("; ") }}</td></tr>
{% endfor %}
</table>

<h2>Held-out split</h2>
<p>{{ c.split.method }} split chosen before any fitting: {{ c.split.n_test }} of
{{ c.split.n_train + c.split.n_test }} records held out (fraction {{ c.split.test_fraction }},
seed {{ c.split.seed }}).</p>

<h2>Features</h2>
<p>Preset <code>{{ c.featurization.preset }}</code>: {{ c.featurization.n_features }} features
from {{ c.featurization.featurizers | join(", ") }} (configuration sha256
<code>{{ c.featurization.config_sha256[:16] }}…</code>).</p>

<h2>Surrogate models (held-out set)</h2>
<p>Metrics on the held-out records, which no fit, search or calibration saw; the baselines
are fitted on the same training records. Intervals are conformal, at the level shown.</p>
<table>
<tr><th class="l">target</th><th class="l">model</th><th>MAE</th><th>RMSE</th><th>R²</th>
<th>dummy MAE</th><th>Magpie + RF MAE</th><th>CV MAE (training part)</th>
<th>interval level</th><th>coverage</th><th>mean width</th><th>n train</th><th>n test</th></tr>
{% for target, m in c.metrics.items() %}{% set info = c.models.get(target, {}) %}
{% set forest = (info.get("baselines", []) | selectattr("name", "equalto", "Magpie + RF") | list) %}
<tr><td class="l">{{ target }} ({{ c.units[target] }})</td>
<td class="l">{{ info.get("algorithm", "") }} {{ info.get("kind", "") }}</td>
<td>{{ m.mae | num }}</td><td>{{ m.rmse | num }}</td><td>{{ m.r2 | num(3) }}</td>
<td>{{ m.dummy_mae | num }}</td>
<td>{{ (forest[0].mae if forest else none) | num }}</td>
<td>{{ info.get("cross_validation", {}).get("mae") | num }}</td>
<td>{{ m.get("level") | num(2) }}</td><td>{{ m.get("coverage") | num(3) }}</td>
<td>{{ m.get("mean_width") | num(3) }}</td>
<td>{{ m.n_train }}</td><td>{{ m.n_test }}</td></tr>
{% endfor %}
</table>
{% for target, m in c.metrics.items() %}{% if m.get("gap_classifier") %}
<p>{{ target }}: the metal / non-metal classifier of the two-stage model has ROC-AUC
{{ m.gap_classifier.roc_auc | num(3) }}, precision {{ m.gap_classifier.precision | num(3) }} and
recall {{ m.gap_classifier.recall | num(3) }} on the held-out records; the intervals cover
{{ m.get("coverage_with_gap") | num(3) }} of the records that have a gap.</p>
{% endif %}{% endfor %}
{% for target, png in c.parity_png.items() %}
<figure><img alt="parity plot of {{ target }}" src="data:image/png;base64,{{ png | b64 }}">
</figure>
{% endfor %}
{% if c.calibration_png %}
<figure><img alt="coverage of the prediction intervals against their nominal level"
src="data:image/png;base64,{{ c.calibration_png | b64 }}"></figure>
{% endif %}

<h3>Feature importance</h3>
<p>Permutation importance on the held-out records: how much the MAE grows when a feature's
column is shuffled (mean ± standard deviation over repeats), most important first.</p>
{% for target, info in c.models.items() %}{% if info.get("importance") %}
<table style="display:inline-table;margin-right:1.5em">
<tr><th class="l">{{ target }}: feature</th><th>MAE increase ({{ c.units[target] }})</th></tr>
{% for row in info.importance %}
<tr><td class="l"><code>{{ row.feature }}</code></td>
<td>{{ row.importance | num }} ± {{ row.std | num }}</td></tr>
{% endfor %}
</table>
{% endif %}{% endfor %}

<h2>Criteria and funnel</h2>
<table>
<tr><th class="l">criterion</th><th>candidates passing (point predictions)</th>
{% if c.expected_funnel %}<th>expected passing (sum of probabilities)</th>{% endif %}</tr>
{% for label, count in c.funnel %}<tr><td class="l">{{ label }}</td><td>{{ count }}</td>
{% if c.expected_funnel %}<td>{{ c.expected_funnel.get(label) | num(1) }}</td>{% endif %}</tr>
{% endfor %}
</table>

{% if c.validation %}
<h2>Screening validation (held-out candidates)</h2>
<p>{{ c.validation.n_true_hits }} of {{ c.validation.n_candidates }} held-out candidates
truly meet every criterion (reported values).{% if c.validation.note %}
{{ c.validation.note }}{% endif %}</p>
<table>
<tr><th>top of the ranking</th><th>candidates</th><th>true hits</th><th>recall</th>
<th>enrichment over random</th></tr>
{% for t in c.validation.top %}
<tr><td>{{ "%d%%" % (t.fraction * 100) }}</td><td>{{ t.k }}</td><td>{{ t.hits }}</td>
<td>{{ "n/a" if t.recall is none else "%.2f" % t.recall }}</td>
<td>{{ "n/a" if t.enrichment is none else "%.1f" % t.enrichment }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2>Shortlist</h2>
<p>Ranked by {{ c.ranking_method }}.</p>
<table>
<tr><th>rank</th><th class="l">id</th><th class="l">formula</th>
<th class="l">space group</th>
{% for cr in c.criteria %}<th>predicted {{ cr.property }} ({{ cr.unit }})</th>{% endfor %}
{% if c.shortlist and "p_success" in c.shortlist[0] %}<th>P(success)</th>{% endif %}
<th>margin</th><th class="l">meets criteria</th></tr>
{% for row in c.shortlist %}
<tr><td>{{ row.rank }}</td><td class="l">{{ row.id }}</td><td class="l">{{ row.formula }}</td>
<td class="l">{{ row.get("spacegroup") or "" }}</td>
{% for cr in c.criteria %}<td>{{ "%.3f" % row["pred_" ~ cr.property] }}
{%- if row.get("lower_" ~ cr.property) is not none %}
[{{ "%.3f" % row["lower_" ~ cr.property] }}, {{ "%.3f" % row["upper_" ~ cr.property] }}]
{%- endif %}</td>{% endfor %}
{% if "p_success" in row %}<td>{{ "%.3f" % row.p_success }}</td>{% endif %}
<td>{{ "%.3f" % row.margin }}</td>
<td class="l">{% if row.meets_criteria %}<span class="ok">yes</span>
{% else %}no{% endif %}</td></tr>
{% endfor %}
</table>

{% if c.failures %}
<h2>Records that failed</h2>
<table><tr><th class="l">record</th><th class="l">stage</th><th class="l">message</th></tr>
{% for f in c.failures %}<tr><td class="l">{{ f.id }}</td><td class="l">{{ f.stage }}</td>
<td class="l">{{ f.message }}</td></tr>{% endfor %}
</table>
{% endif %}

<h2>Run</h2>
<table><tr><th class="l">step</th><th>seconds</th></tr>
{% for step, seconds in c.step_seconds.items() %}
<tr><td class="l">{{ step }}</td><td>{{ "%.1f" % seconds }}</td></tr>{% endfor %}
</table>
<p>Software: {% for name, v in c.software.items() %}{{ name }} {{ v }}{% if not loop.last %},
{% endif %}{% endfor %}.</p>
</body></html>
"""
)


def render_report(context: ReportContext) -> str:
    """Return the report's HTML text."""
    return _TEMPLATE.render(c=context)
