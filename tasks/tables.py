"""Tables as bytes: the Parquet form in which tables travel to the artifact store."""

from __future__ import annotations

import io

import pandas as pd


def frame_to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialize a table, index included, as Parquet bytes."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=True)
    return buffer.getvalue()


def parquet_to_frame(data: bytes) -> pd.DataFrame:
    """Read Parquet bytes written by :func:`frame_to_parquet`."""
    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
