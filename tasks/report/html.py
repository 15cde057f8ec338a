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


_ENVIRONMENT = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
_ENVIRONMENT.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
_ENVIRONMENT.filters["num"] = _number
_ENVIRONMENT.filters["prob"] = _probability
_ENVIRONMENT.filters["utc"] = _utc
_ENVIRONMENT.filters["breakable"] = _breakable
_ENVIRONMENT.globals["FEW_TRUE_HITS"] = FEW_TRUE_HITS
_TEMPLATE = _ENVIRONMENT.from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>matscreen report: {{ c.campaign }} ({{ c.run_id }})</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:78em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;vertical-align:top}
th{background:#f2f2f2}
td.l,th.l{text-align:left}
td.nw{white-space:nowrap}
td.path{overflow-wrap:anywhere;min-width:12em}
td.cite{min-width:18em}
td.licence{min-width:8em}
td.params{min-width:18em}
td.notes{overflow-wrap:anywhere;min-width:12em}
.ok{color:#176d2a;font-weight:600}
.warn{color:#a04000}
.note{background:#fff8e1;border-left:4px solid #e0a800;padding:0.4em 0.8em}
.sub{font-weight:normal;font-size:0.85em;color:#555}
code.spec{font-weight:700}
code.search{font-weight:700;font-style:italic}
code{font-size:0.9em}
figure{display:inline-block;margin:0 1em 1em 0}
.wide{overflow-x:auto}
table.compact{font-size:0.92em}
table.compact th,table.compact td{padding:0.2em 0.4em}
code.cmd{white-space:nowrap}
nav.toc ol{margin:0.3em 0 1em;padding:0}
nav.toc li{display:inline}
nav.toc li+li:before{content:" · "}
ul.packages{padding:0;margin:0.3em 0 1em}
ul.packages li{display:inline-block;margin:0 1.4em 0.2em 0}
ul.packages span{color:#555}
h2.part{border-top:3px solid #333;padding-top:0.5em;margin-top:2em;font-size:1.5em}
div.pictures{display:flex;flex-wrap:wrap;gap:1em}
div.pictures figure{margin:0;text-align:center;font-size:0.85em}
</style></head><body>
<h1>{{ c.campaign }}</h1>
<p>{{ c.description }}</p>
<p>Run <code>{{ c.run_id }}</code>, finished {{ c.finished_at | utc }}; campaign spec
sha256 <code title="{{ c.spec_sha256 }}">{{ c.spec_sha256[:16] }}…</code>.</p>
<nav class="toc"><b>Contents</b><ol>
{% if c.changes %}<li><a href="#changes">Changes</a></li>{% endif %}
<li><a href="#summary">Summary</a></li>
<li><a href="#sources">Data sources</a></li>
<li><b>Validation:</b> <a href="#split">held-out split</a></li>
<li><a href="#features">Features</a></li>
<li><a href="#models">Surrogate models</a></li>
{% if c.validation %}<li><a href="#validation">Screening validation</a></li>{% endif %}
<li><b>The screen:</b> <a href="#screen">candidates</a></li>
<li><a href="#criteria">Criteria and funnel</a></li>
<li><a href="#shortlist">Shortlist</a></li>
{% if c.structure_files %}<li><a href="#structures">Structure files for DFT</a></li>{% endif %}
{% if c.suggestions is not none %}<li><a href="#suggestions">Next experiments</a></li>{% endif %}
{% if c.failures %}<li><a href="#failures">Records left out</a></li>{% endif %}
<li><a href="#run">Run</a></li>
</ol></nav>

{% if c.changes %}{% set d = c.changes %}
<h2 id="changes">Changes since the previous run</h2>
{% if d.get("unavailable") %}<p>No comparison with run <code>{{ d.previous_run }}</code>:
{{ d.unavailable }}</p>{% else %}
<p>Compared with run <code>{{ d.previous_run }}</code> (started {{ d.previous_started_at | utc }}):
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
{% endif %}{% endif %}

<h2 id="summary">Summary</h2>
<table>
<tr><th class="l">records read</th><td>{{ c.counts.records }}</td></tr>
<tr><th class="l">records that failed to read</th><td>{{ c.counts.ingest_failures }}</td></tr>
<tr><th class="l">duplicates of an earlier record (linked, not used twice)</th>
<td>{{ c.counts.duplicates }}</td></tr>
<tr><th class="l">structures that failed to featurize</th>
<td>{{ c.counts.feature_failures }}</td></tr>
<tr><th class="l">training pool: records learned from / held out for validation</th>
<td>{{ c.split.n_train }} / {{ c.split.n_test }}</td></tr>
{% if c.retrospective %}
<tr><th class="l">candidate pool</th><td>none: the held-out records are screened</td></tr>
{% else %}
<tr><th class="l">candidate pool (records of the sources to screen)</th>
<td>{{ c.counts.get("candidate_pool", 0) }}</td></tr>
<tr><th class="l">candidates already known as training records</th>
<td>{{ c.counts.get("known_candidates", 0) }}</td></tr>
{% endif %}
<tr><th class="l">records left out, each with its reason</th>
<td>{{ c.counts.get("excluded", 0) }}</td></tr>
<tr><th class="l">candidates ranked</th><td>{{ c.counts.candidates }}</td></tr>
<tr><th class="l">candidates predicted to meet every criterion</th><td>{{ c.counts.hits }}</td></tr>
</table>
{% if c.counts.hits == 0 %}
<p class="note">No candidate is predicted to meet every criterion. The shortlist therefore
holds the candidates closest to passing: those with {{ c.ranking_order.closest }}. They are
near misses worth a closer look, not predicted hits.</p>
{% endif %}

<h2 id="sources">Data sources</h2>
{% set show_version = c.sources | selectattr("database_version") | list | length > 0 %}
<table>
<tr><th class="l">source</th><th class="l">pool</th><th class="l">kind</th>
<th class="l">file or endpoint</th>
{% if show_version %}<th class="l">database version</th>{% endif %}
<th class="l">sha256</th><th>records</th><th class="l">licence</th><th class="l">cite</th></tr>
{% for s in c.sources %}
<tr><td class="l">{{ s.source }}</td><td class="l">{{ c.pools.get(s.source, "") }}</td>
<td class="l">{{ s.kind }}</td>
<td class="l path"><code>{{ s.location | breakable("/") }}</code></td>
{% if show_version %}<td class="l">{{ s.database_version or "" }}</td>{% endif %}
<td class="l nw"><code title="{{ s.sha256 }}">{{ s.sha256[:16] }}…</code></td>
<td>{{ s.n_rows }}</td><td class="l licence">{{ s.licence }}</td>
<td class="l cite">{{ s.citation | join("; ") }}</td></tr>
{% endfor %}
</table>

<h2 class="part">Validation: how far the models and the ranking can be trusted</h2>
<h2 id="split">Held-out split</h2>
<p>{{ c.split.method }} split chosen before any fitting: {{ c.split.n_test }} of
{{ c.split.n_train + c.split.n_test }} records held out (fraction {{ c.split.test_fraction }},
seed {{ c.split.seed }}).</p>

<h2 id="features">Features</h2>
<p>Preset <code>{{ c.featurization.preset }}</code>: {{ c.featurization.n_features }} features
from {{ c.featurization.featurizers | join(", ") }} (configuration sha256
<code title="{{ c.featurization.config_sha256 }}">{{ c.featurization.config_sha256[:16] }}…</code>).
{% if c.featurization.get("chosen_because") %}The spec left the preset to matscreen, which chose it
because {{ c.featurization.chosen_because }}.{% endif %}
</p>

<h2 id="models">Surrogate models (held-out set)</h2>
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
{{ m.get("coverage_with_gap") | num(3) }} of the records that have a gap, and
{{ m.get("coverage_predicted_gap") | num(3) }} of the {{ m.get("n_predicted_gap", 0) }} records
predicted to have one (calibrated on their own; metals sit inside zero-width intervals,
which lifts the overall coverage).</p>
{% endif %}{% endfor %}
{% for target, png in c.parity_png.items() %}
<figure><img alt="parity plot of {{ target }}" src="data:image/png;base64,{{ png | b64 }}">
</figure>
{% endfor %}
{% if c.calibration_png %}
<figure><img alt="coverage of the prediction intervals against their nominal level"
src="data:image/png;base64,{{ c.calibration_png | b64 }}"></figure>
{% endif %}

{% if c.model_settings %}
<h3 id="model-settings">Model settings</h3>
<p>Parameters of the final fit: the algorithm's defaults, with those set in the campaign
spec (<b>bold</b>) or chosen by the search (<b><i>bold italic</i></b>).</p>
<table>
<tr><th class="l">target</th><th class="l">model</th><th>features</th>
<th class="l">parameters</th><th>CV folds</th><th class="l">search</th>
<th class="l">intervals</th><th class="l">other</th></tr>
{% for s in c.model_settings %}
<tr><td class="l">{{ s.target }}</td><td class="l nw">{{ s.algorithm }} {{ s.kind }}</td>
<td>{{ s.n_features if s.n_features is not none else "" }}</td>
<td class="l params">{% for p in s.parameters %}
<code class="{{ p.origin }}">{{ p.name }}={{ p.value }}</code>{% if not loop.last %},{% endif %}
{% endfor %}</td>
<td>{{ s.cv_folds }}</td><td class="l">{{ s.search }}</td><td class="l">{{ s.interval }}</td>
<td class="l notes">{{ s.notes | join("; ") }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h3 id="importance">Feature importance</h3>
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

{% if c.validation %}{% set v = c.validation %}
<h2 id="validation">Screening validation (held-out records, ranked as candidates)</h2>
<p>{{ v.n_true_hits }} of {{ v.n_candidates }} held-out records
truly meet every criterion (reported values).{% if v.note %}
{{ v.note[:1] | upper }}{{ v.note[1:] }}.{% endif %}</p>
{% if 0 < v.n_true_hits < FEW_TRUE_HITS %}
<p class="note">Caution: only {{ v.n_true_hits }} true
{{ "hit" if v.n_true_hits == 1 else "hits" }}.
Recall and enrichment below rest on so few hits that one hit more or less near the top of
the ranking changes them a lot; read them as an indication, not a measurement.</p>
{% endif %}
<table>
<tr><th>top of the ranking</th><th>candidates</th><th>true hits</th><th>recall</th>
<th>enrichment over random</th></tr>
{% for t in v.top %}
<tr><td>{{ "%d%%" % (t.fraction * 100) }}</td><td>{{ t.k }}</td><td>{{ t.hits }}</td>
<td>{{ "n/a" if t.recall is none else "%.2f" % t.recall }}</td>
<td>{{ "n/a" if t.enrichment is none else "%.1f" % t.enrichment }}</td></tr>
{% endfor %}
</table>
{% endif %}

<h2 class="part">The screen</h2>
<h2 id="screen">Candidates</h2>
{% if c.retrospective %}
<p>No source of this campaign is a pool of candidates to screen, so the held-out records
are screened: a retrospective screen, whose hits can be checked against their labels.</p>
{% else %}
<p>{{ c.counts.get("candidate_pool", 0) }} candidates from the sources to screen
({{ c.pools | dictsort | selectattr(1, "ne", "train") | map(attribute=0) | join(", ") }});
{{ c.counts.get("known_candidates", 0) }} are already known as training records and are not screened
again; {{ c.counts.candidates }} are ranked. Records left out are listed with their reason
at the end of the report.</p>
{% endif %}

<h2 id="criteria">Criteria and funnel</h2>
<table>
<tr><th class="l">criterion</th><th>candidates passing (point predictions)</th>
{% if c.expected_funnel %}<th>expected passing (sum of probabilities)</th>{% endif %}</tr>
{% for label, count in c.funnel %}<tr><td class="l">{{ label }}</td><td>{{ count }}</td>
{% if c.expected_funnel %}<td>{{ c.expected_funnel.get(label) | num(1) }}</td>{% endif %}</tr>
{% endfor %}
</table>

<h2 id="shortlist">Shortlist</h2>
<p>Ranked {{ c.ranking_order.order or c.ranking_method }}.
{% if c.counts.hits == 0 %}No candidate is predicted to meet every criterion, so these
are the candidates closest to passing: those with {{ c.ranking_order.closest }}.{% endif %}
Intervals are the models' conformal prediction intervals;
{% set first = c.shortlist[0] if c.shortlist else {} %}
{% if c.properties | selectattr("reported") | list %}reported values are the source's,
shown in green where they lie inside the criteria's range. {% endif %}</p>
<div class="wide"><table class="compact">
<tr><th>rank</th><th class="l">id</th><th class="l">formula</th>
<th class="l">space group</th>
{% for col in c.properties %}<th>predicted {{ col.property | breakable("_") }} ({{ col.unit }})
{%- if col.level %}
<span class="sub">[{{ "%g" % (col.level * 100) }} % interval]</span>{% endif %}</th>{% endfor %}
{% for col in c.properties %}{% if col.reported %}
<th>reported {{ col.property | breakable("_") }} ({{ col.unit }})</th>{% endif %}{% endfor %}
{% if "p_success" in first %}<th>P(success)</th>{% endif %}
<th>margin</th><th class="l">meets criteria</th>
{% if "in_domain" in first %}<th class="l">in training domain</th>{% endif %}
{% if "competing_phases" in first %}<th class="l">competing phases (hull)</th>{% endif %}
</tr>
{% for row in c.shortlist %}
<tr><td>{{ row.rank }}</td><td class="l nw">{{ row.id }}</td><td class="l">{{ row.formula }}</td>
<td class="l nw">{{ row.get("spacegroup") or "" }}</td>
{% for col in c.properties %}{% set low = row.get("lower_" ~ col.property) %}
<td class="nw">{{ "%.3f" % row["pred_" ~ col.property] }}{% if low is not none %}
{{- " [%.3f, %.3f]" % (low, row["upper_" ~ col.property]) }}{% endif %}</td>{% endfor %}
{% for col in c.properties %}{% if col.reported %}
{% set value = row["reported_" ~ col.property] %}
{% if value is none %}<td>n/a</td>{% else %}
{% set inside = (col.min is none or value >= col.min) and (col.max is none or value <= col.max) %}
<td{% if inside %} class="ok"{% endif %}>{{ "%.3f" % value }}</td>{% endif %}
{% endif %}{% endfor %}
{% if "p_success" in row %}<td>{{ row.p_success | prob }}</td>{% endif %}
<td>{{ "%.3f" % row.margin }}</td>
<td class="l">{% if row.meets_criteria %}<span class="ok">yes</span>
{% else %}no{% endif %}</td>
{% if "in_domain" in first %}<td class="l">{% if row.in_domain %}yes{% else %}
<span class="warn">no: far from the training records</span>{% endif %}</td>{% endif %}
{% if "competing_phases" in first %}<td class="l">{{ row.competing_phases or "" }}</td>{% endif %}
</tr>
{% endfor %}
</table></div>
{% if c.pictures %}
<div class="pictures">
{% for p in c.pictures %}<figure><img alt="unit cell of {{ p.formula }}"
src="data:image/png;base64,{{ p.png | b64 }}"><figcaption>{{ p.rank }}. {{ p.formula }}<br>
<span class="sub">{{ p.id }}</span></figcaption></figure>{% endfor %}
</div>
{% endif %}
<p>Trace any candidate back to its source file and row:
<code class="cmd">matscreen lineage &lt;id&gt; --run {{ c.run_id }}</code>{% if c.shortlist %},
e.g. <code class="cmd">matscreen lineage {{ c.shortlist[0].id }} --run {{ c.run_id }}</code>
{%- endif %}.</p>

{% if c.structure_files %}{% set f = c.structure_files %}
<h2 id="structures">Structure files for DFT</h2>
<p>The folder <code>{{ f.folder }}/</code> beside this report holds every shortlisted
candidate as CIF and POSCAR, and <code>{{ f.jsonl }}</code>: one line per candidate with its
pymatgen structure, id, catalog id, predictions and intervals, ready for an atomate2 or
jobflow workflow (<code>Structure.from_dict(line["structure"])</code>); {{ f.count }} files
in all, each listed with its sha256 in <code>ro-crate-metadata.json</code>.</p>
{% endif %}

{% if c.suggestions is not none %}{% set g = c.suggest_settings or {} %}
<h2 id="suggestions">Next experiments</h2>
<p>Candidates worth measuring next, by the acquisition P(success) + κ·H: the chance of a
hit plus κ times the information (in bits) that the measurement's outcome, hit or not,
carries{% if g %}; κ = {{ g.kappa }}{% if g.exclude_shortlist %}, shortlisted candidates
left out{% endif %}{% endif %}. Candidates with equal acquisitions (all ~0 when no candidate is
likely to pass) go by log<sub>10</sub> P(success), the least unlikely first, then by
margin. Also written to <code>suggestions.csv</code>.</p>
{% if c.suggestions %}
<div class="wide"><table class="compact">
<tr><th>#</th><th class="l">id</th><th class="l">formula</th><th class="l">space group</th>
<th>rank in the ranking</th><th>P(success)</th><th>log<sub>10</sub> P(success)</th>
<th>information (bits)</th><th>acquisition</th></tr>
{% for row in c.suggestions %}
<tr><td>{{ row.suggestion }}</td><td class="l nw">{{ row.id }}</td>
<td class="l">{{ row.get("formula") or "" }}</td>
<td class="l nw">{{ row.get("spacegroup") or "" }}</td>
<td>{{ row.get("rank") if row.get("rank") is not none else "" }}</td>
<td>{{ row.p_success | prob }}</td>
{% set log_p = row.get("log10_p_success") %}
<td>{{ "−∞" if log_p is not none and log_p < -1e308 else log_p | num(1) }}</td>
<td>{{ row.information_bits | prob }}</td><td>{{ row.acquisition | prob }}</td></tr>
{% endfor %}
</table></div>
{% else %}<p>No candidate is left to suggest.</p>{% endif %}
{% endif %}

{% if c.failures %}
<h2 id="failures">Records left out</h2>
<p>Every record read is trained on, screened, or listed here with the step that left it
out and why:
{% for stage, group in c.failures | groupby("stage") %}{{ group | length }} at
{{ stage }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>
{% for stage, group in c.failures | groupby("stage") %}
<details{% if group | length <= 20 %} open{% endif %}><summary>{{ stage }}:
{{ group | length }} {{ "record" if group | length == 1 else "records" }}</summary>
<table><tr><th class="l">record</th><th class="l">message</th></tr>
{% for f in group[:shown_failures] %}<tr><td class="l">{{ f.id }}</td>
<td class="l">{{ f.message }}</td></tr>
{% endfor %}</table>{% if group | length > shown_failures %}<p>… and
{{ group | length - shown_failures }} more: <code>matscreen find errors --run {{ c.run_id }}</code>
lists them all.</p>{% endif %}</details>
{% endfor %}
{% endif %}

<h2 id="run">Run</h2>
<p>Run <code>{{ c.run_id }}</code>, finished {{ c.finished_at | utc }}.</p>
<table><tr><th class="l">step</th><th>seconds</th></tr>
{% for step, seconds in c.step_seconds.items() %}
<tr><td class="l">{{ step }}</td><td>{{ "%.1f" % seconds }}</td></tr>{% endfor %}
<tr><th class="l">total (steps before the report)</th>
<th>{{ "%.1f" % c.total_seconds }}</th></tr>
</table>
<p>Software:</p>
<ul class="packages">
{% for name, v in c.software | dictsort %}<li>{{ name }} <span>{{ v }}</span></li>
{% endfor %}
</ul>
</body></html>
"""
)


#: Records left out that the report lists per step (all of them are in the catalog).
SHOWN_FAILURES = 200


def render_report(context: ReportContext) -> str:
    """Return the report's HTML text."""
    return _TEMPLATE.render(c=context, shown_failures=SHOWN_FAILURES)
