"""Checked numeric values of a table column (torch-free): ratings for training and evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError, row_label
from .ids import show_id


def numeric_column(values: pd.Series, where: str, column: str, what: str = "rating") -> np.ndarray:
    """float64 values of a column; non-numeric, empty, NaN or infinite cells raise naming the first row.

    Parameters
    ----------
    values : pandas.Series
    where : str
        The input's name, for the message.
    column : str
        The column's name, for the message.
    what : str
        What the values are (``"rating"``), for the message.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{where}: column {column!r} is boolean, expected numeric {what}s")
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raw = values.iloc[first]
        shown = "empty" if pd.isna(raw) else show_id(raw)
        raise DataError(
            f"{where}: {what} at {row_label(first)} in column {column!r} is {shown}, not a number "
            f"({int(bad.sum())} such row(s)); fix or drop them"
        )
    return arr
