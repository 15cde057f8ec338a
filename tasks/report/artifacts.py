"""What a campaign run shows in the Prefect UI: the shortlist as a table, the metrics and
the changes since the previous run as markdown (published by
:func:`matscreen.flows.artifacts.publish_artifacts`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

#: Shortlist columns shown in the Prefect UI (the full table is in shortlist.csv).
_SHOWN = ("rank", "id", "formula", "spacegroup", "margin", "p_success", "meets_criteria")


def metrics_markdown(document: dict[str, Any]) -> str:
    """The held-out metrics and screening figures of a run as a markdown table."""
    lines = [
        f"## {document['campaign']} — run `{document['run_id']}`",
        "",
        "| target | MAE | RMSE | R² | dummy MAE | train | test | unit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for target, m in document["targets"].items():
        cells = [_number(m.get(k)) for k in ("mae", "rmse", "r2", "dummy_mae")]
        lines.append(
            f"| {target} | {' | '.join(cells)} | {m.get('n_train', '')} | "
            f"{m.get('n_test', '')} | {m.get('unit', '')} |"
        )
    s = document["screening"]
    lines += [
        "",
        f"{s['n_predicted_hits']} of {s['n_candidates']} held-out candidates predicted to meet "
        f"every criterion; {s['n_true_hits']} truly do, {s['true_hits_in_shortlist']} of them "
        f"in the shortlist of {s['shortlist_size']}.",
    ]
    for top in (s.get("validation") or {}).get("top", []):
        lines.append(
            f"- top {top['fraction']:.0%} ({top['k']}): {top['hits']} true hits, recall "
            f"{_number(top['recall'])}, enrichment {_number(top['enrichment'])}"
        )
    return "\n".join(lines) + "\n"


def changes_markdown(campaign: str, changes: dict[str, Any]) -> str:
    """What changed since the campaign's previous run, as markdown."""
    if changes.get("unavailable"):
        return (
            f"## {campaign}: no comparison with run `{changes['previous_run']}`\n\n"
            f"{changes['unavailable']}\n"
        )
    lines = [
        f"## {campaign}: changes since run `{changes['previous_run']}`",
        "",
        f"- new candidates: {changes['new_candidates']['count']}; dropped: "
        f"{changes['dropped_candidates']['count']}",
        f"- new hits: {changes['new_hits']['count']} {', '.join(changes['new_hits']['ids'][:10])}",
        f"- dropped hits: {changes['dropped_hits']['count']} "
        f"{', '.join(changes['dropped_hits']['ids'][:10])}",
        f"- rank moves: {changes['moved']} candidates moved, {changes['unchanged']} kept "
        "their rank",
    ]
    if changes["moves"]:
        lines += ["", "| candidate | rank before | rank now | move |", "|---|---|---|---|"]
        lines += [
            f"| {m['id']} | {m['rank_a']} | {m['rank_b']} | {m['delta']:+d} |"
            for m in changes["moves"][:10]
        ]
    for change in changes["inputs"]:
        lines.append(
            f"- {change['kind']}: {change['only_previous']} only in the previous run, "
            f"{change['only_this_run']} only in this one"
        )
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{value:.4g}"


def shortlist_rows(shortlist: pd.DataFrame) -> list[dict[str, Any]]:
    """The shortlist's rows as the Prefect UI shows them: the main columns and every
    prediction, missing values as None."""
    columns = [c for c in _SHOWN if c in shortlist.columns]
    columns += [c for c in shortlist.columns if c.startswith("pred_")]
    rows = shortlist[columns].astype(object).where(shortlist[columns].notna(), None)
    return rows.to_dict(orient="records")
