"""A prediction record survives its stored form: the per-row table and its scalars."""

from __future__ import annotations

import json
import math

import pytest

from matscreen.tasks.hashing import canonical_json
from matscreen.tasks.models.records import PredictionRecord, record_from_table, record_scalars
from matscreen.tasks.tables import frame_to_parquet, parquet_to_frame, per_row_frame


@pytest.mark.parametrize(
    "record",
    [
        PredictionRecord("heat", ["a:1", "b:2"], [0.5, None], [0.4, -1.25], 0.1, 300),
        PredictionRecord(
            "band_gap",
            ["a:1", "b:2", "c:3"],
            [None, None, 2.0],
            [0.0, 1.5, 2.25],
            0.7,
            3000,
            lower=[0.0, 0.5, 1.0],
            upper=[0.5, 2.5, 3.5],
            probability=[0.125, 0.875, 1.0],
            level=0.9,
            gap_pred=[1.0, 1.75, 2.5],
            gap_lower=[0.25, 0.5, 1.0],
            gap_upper=[2.0, 3.0, 4.0],
            metal_value=0.0,
            domain_distance=[0.3, 1.2, math.pi],
            in_domain=[True, False, True],
        ),
    ],
)
def test_record_from_its_stored_table_and_scalars_is_the_record(record: PredictionRecord) -> None:
    # As the catalog keeps them: the table as Parquet, the scalars as canonical JSON.
    stored = parquet_to_frame(frame_to_parquet(per_row_frame(record)))
    scalars = json.loads(canonical_json(record_scalars(record)))
    assert record_from_table(record.target, stored, scalars) == record
