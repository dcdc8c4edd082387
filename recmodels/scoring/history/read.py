"""Read and check a ``--history`` input: ratings made after training (torch-free).

The history has the training data's columns (user id, item id, rating; ``--user-col``,
``--item-col``, ``--rating-col``, defaults from the bundle's manifest), as a CSV/Parquet file,
directory or glob (:mod:`recmodels.tables`), a DataFrame or an Arrow table. What is refused, with
one line naming the input, row or column: a missing column, a null id, an id that cannot be an
id of the bundle's kind, a missing or non-numeric rating, a rating outside the bundle's range.
What is counted: duplicated (user, item) pairs (the last row wins, as the last rating made).
An empty history is no error: nothing is folded in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from ...errors import DataError
from ...ids import to_kind
from ...tables import read_table

_HINT = "pass --user-col/--item-col/--rating-col"


@dataclass
class HistoryRows:
    """A checked history: ids in the bundle's kinds and float64 ratings, duplicates removed.

    Attributes
    ----------
    users, items : ndarray
        Ids as the bundle's id kinds (int64 or object str).
    ratings : ndarray of float64
    rows_read : int
        Rows in the input.
    duplicates : int
        Rows dropped because a later row rated the same (user, item) pair.
    where : str
        The input, for messages.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    rows_read: int
    duplicates: int
    where: str


def _table(source, columns: list[str]) -> tuple[pa.Table, str]:
    if isinstance(source, pd.DataFrame):
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise DataError(f"history DataFrame: no column {missing[0]!r} (columns: "
                            f"{', '.join(map(str, source.columns))}); {_HINT}")
        return pa.Table.from_pandas(source[columns], preserve_index=False), "history DataFrame"
    if isinstance(source, pa.Table | pa.RecordBatch):
        missing = [c for c in columns if c not in source.schema.names]
        if missing:
            raise DataError(f"history table: no column {missing[0]!r} (columns: "
                            f"{', '.join(source.schema.names)}); {_HINT}")
        return pa.Table.from_batches([source]) if isinstance(source, pa.RecordBatch) else source, \
            "history table"
    return read_table(source, columns, what="history", text_columns=columns[:2],
                      hint=f"; {_HINT}")


def _ids(column, kind: str, role: str, col: str, where: str) -> np.ndarray:
    values, invalid, nulls = to_kind(column, kind)
    for mask, problem in ((nulls, "is null"), (invalid, f"cannot be a {kind} {role} id like the bundle's")):
        if mask is not None and mask.any():
            row = int(np.argmax(mask))
            raise DataError(f"{where}: row {row + 1}: {role} id ({col!r}) {problem}; fix or drop the row")
    return values


def _ratings(column, col: str, where: str, rating_range: tuple[float, float]) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:
            arr = arr.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            text = arr.to_pylist()
            for row, value in enumerate(text):
                try:
                    float(value) if value is not None else None
                except ValueError:
                    raise DataError(f"{where}: row {row + 1}: rating ({col!r}) {value!r} is not a number") \
                        from None
    elif not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        raise DataError(f"{where}: rating column {col!r} holds {arr.type}, not numbers")
    values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where}: row {row + 1}: rating ({col!r}) is missing or not finite; "
                        "fix or drop the row")
    low, high = rating_range
    outside = (values < low) | (values > high)
    if outside.any():
        row = int(np.argmax(outside))
        span = f"[{low:g}, {high:g}]" if math.isfinite(low) and math.isfinite(high) else f"{low:g}..{high:g}"
        raise DataError(f"{where}: row {row + 1}: rating {values[row]:g} is outside the bundle's rating "
                        f"range {span} ({int(outside.sum())} such rows); is --rating-col right?")
    return values


def read_history(source, *, user_col: str, item_col: str, rating_col: str, user_kind: str,
                 item_kind: str, rating_range: tuple[float, float]) -> HistoryRows:
    """Read, check and de-duplicate a history (see the module docstring).

    Raises
    ------
    DataError
        One line naming the input, row and column.
    """
    columns = [user_col, item_col, rating_col]
    if len(set(columns)) < 3:
        raise DataError(f"history: the user, item and rating columns must differ; got {columns}")
    table, where = _table(source, columns)
    n = table.num_rows
    users = _ids(table.column(user_col), user_kind, "user", user_col, where)
    items = _ids(table.column(item_col), item_kind, "item", item_col, where)
    ratings = _ratings(table.column(rating_col), rating_col, where, rating_range)
    keep = _last_of_pairs(users, items)
    return HistoryRows(users[keep], items[keep], ratings[keep], n, n - int(keep.size), str(where))


def _last_of_pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions of the last row of every (user, item) pair, in input order."""
    if users.size == 0:
        return np.zeros(0, dtype=np.int64)
    u = pd.factorize(users)[0]
    i = pd.factorize(items)[0]
    key = u.astype(np.int64) * (int(i.max()) + 1) + i
    reversed_first = np.unique(key[::-1], return_index=True)[1]
    return np.sort(users.size - 1 - reversed_first)
