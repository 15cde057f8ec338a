"""What a campaign run shows in the Prefect UI."""

from __future__ import annotations

import math

import pandas as pd

from matscreen.tasks.report.artifacts import shortlist_rows


def test_shortlist_rows_keep_the_main_columns_and_predictions_with_gaps_as_none() -> None:
    shortlist = pd.DataFrame(
        {
            "rank": [1, 2],
            "id": ["cmr:1", "cmr:2"],
            "formula": ["SrTiO3", "BaSnO3"],
            "pred_band_gap": [1.5, math.nan],
            "std_band_gap": [0.2, 0.3],
            "margin": [0.4, -0.1],
        }
    )
    rows = shortlist_rows(shortlist)
    assert rows == [
        {"rank": 1, "id": "cmr:1", "formula": "SrTiO3", "margin": 0.4, "pred_band_gap": 1.5},
        {"rank": 2, "id": "cmr:2", "formula": "BaSnO3", "margin": -0.1, "pred_band_gap": None},
    ]
