"""Tables as bytes: the Parquet form in which tables travel to the artifact store."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def frame_to_parquet(frame: pd.DataFrame, row_group_size: int | None = None) -> bytes:
    """Serialize a table, index included, as Parquet bytes (in row groups of
    ``row_group_size`` rows when given, so that a reader can decode one group only)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=True, row_group_size=row_group_size)
    return buffer.getvalue()


def parquet_to_frame(data: bytes) -> pd.DataFrame:
    """Read Parquet bytes written by :func:`frame_to_parquet`."""
    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")


def per_row_frame(record: Any) -> pd.DataFrame:
    """The per-row numbers of a record of predictions as a float table indexed by ``id``.

    ``record`` is any object with ``ids`` and ``y_true``/``y_pred`` (a PredictionRecord, or
    the like): every attribute that is a list as long as ``ids`` becomes a column
    (``y_true`` first, then ``y_pred``, then the rest in attribute order), None and
    booleans as NaN and 0/1.
    """
    ids = list(record.ids)
    attributes = vars(record)
    names = ["y_true", "y_pred"] + [n for n in attributes if n not in ("ids", "y_true", "y_pred")]
    columns = {}
    for name in names:
        value = attributes.get(name)
        if isinstance(value, list | tuple | np.ndarray) and len(value) == len(ids):
            columns[name] = [np.nan if v is None else float(v) for v in value]
    return pd.DataFrame(columns, index=pd.Index(ids, name="id"), dtype="float64")
