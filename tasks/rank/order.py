"""Deterministic ordering of a ranking: scores rounded to 1e-9, ties broken by id."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Scores that agree to this many decimals are ties, so floating-point noise (a sum taken
#: in another order, another BLAS) never decides an order.
TIE_DECIMALS = 9


def order_by(frame: pd.DataFrame, keys: list[tuple[str, bool]]) -> pd.DataFrame:
    """Sort rows by ``keys``, then by ``id``, and number them in ``rank`` (1 = best).

    Parameters
    ----------
    frame
        Rows to order, with an ``id`` column.
    keys
        ``(column, descending)`` pairs, most significant first. Float columns are
        rounded to 1e-9 before comparing.

    Returns
    -------
    pandas.DataFrame
        The rows in order, with a fresh index and ``rank``.
    """
    sort = pd.DataFrame(index=frame.index)
    names = []
    for i, (column, _) in enumerate(keys):
        values = frame[column]
        if pd.api.types.is_float_dtype(values):
            values = values.round(TIE_DECIMALS)
        sort[f"k{i}"] = values
        names.append(f"k{i}")
    sort["id"] = frame["id"].astype(str)
    ascending = [not descending for _, descending in keys] + [True]
    order = sort.sort_values([*names, "id"], ascending=ascending, kind="mergesort").index
    ordered = frame.loc[order].reset_index(drop=True)
    ordered["rank"] = np.arange(1, len(ordered) + 1)
    return ordered
