"""Prefect artifacts of a campaign run, on the flow run's page next to its logs and task runs."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from matscreen.tasks.report.artifacts import changes_markdown, metrics_markdown, shortlist_rows


def publish_artifacts(shortlist: pd.DataFrame, document: dict[str, Any]) -> None:
    """Create the run's ``shortlist`` table and ``metrics`` markdown artifacts (and
    ``changes``, when the run has a previous one) in Prefect."""
    campaign = document["campaign"]
    create_table_artifact(
        key="shortlist",
        table=shortlist_rows(shortlist),
        description=f"Shortlist of campaign {campaign}",
    )
    create_markdown_artifact(
        key="metrics",
        markdown=metrics_markdown(document),
        description=f"Held-out metrics of campaign {campaign}",
    )
    if document.get("changes"):
        create_markdown_artifact(
            key="changes",
            markdown=changes_markdown(campaign, document["changes"]),
            description=f"Changes since the previous run of campaign {campaign}",
        )
