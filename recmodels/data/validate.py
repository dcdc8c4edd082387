"""Checks on interaction columns: ids by the id rules, ratings, timestamps, repeated pairs.

Each check returns the clean column or raises a one-line :class:`~recmodels.errors.DataError`
naming the input, the column and the first bad row (:func:`~recmodels.errors.row_label`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, row_label
from ..ids import fit_kind, show_id
from .columns import Columns


def _empty_error(where: str, column: str, what: str, empty: np.ndarray) -> DataError:
    first = int(np.argmax(empty))
    return DataError(
        f"{where}: {int(empty.sum())} empty {what}(s) in column {column!r}, first at {row_label(first)}; "
        "drop or fill those rows"
    )


def id_column(values, where: str, column: str) -> pd.Series:
    """Ids as :mod:`recmodels.ids` reads them: an int64 Series, or a Series of str.

    Parameters
    ----------
    values : pandas Series or pyarrow (Chunked)Array
        The raw column (CSV text, a typed Parquet column, any DataFrame dtype).
    where, column : str
        The input and column, for messages.

    Raises
    ------
    DataError
        A null (empty, NaN, None) id, naming the first; a column type that cannot hold ids.
    """
    try:
        kind, ids, nulls = fit_kind(values)
    except TypeError as exc:
        raise DataError(f"{where}: column {column!r}: {exc}; ids must be integers or text") from None
    if nulls is not None:
        raise _empty_error(where, column, "id", nulls)
    return pd.Series(ids, name=column)


def reject_empty(values: pd.Series, where: str, column: str, what: str) -> None:
    """Raise :class:`DataError` naming the first empty cell of ``values``, if any."""
    empty = values.isna().to_numpy()
    if empty.any():
        raise _empty_error(where, column, what, empty)


def check_range(rating: np.ndarray, rating_range, where: str, column: str) -> None:
    """Raise naming the first rating outside the inclusive ``rating_range``."""
    lo, hi = (float(v) for v in rating_range)
    bad = (rating < lo) | (rating > hi)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{where}: rating {rating[first]:g} at {row_label(first)} in column {column!r} is "
            f"outside [{lo:g}, {hi:g}] ({int(bad.sum())} such row(s)); fix the data, or widen "
            "--rating-range (rating_range in Python and TOML) or leave it out to use the "
            "training ratings' range"
        )


def timestamp_column(values: pd.Series, where: str, column: str) -> pd.Series:
    """Numeric timestamps as they are; date/time text parsed to UTC ``datetime64``."""
    reject_empty(values, where, column, "timestamp")
    if pd.api.types.is_datetime64_any_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return values
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        return numeric
    parsed = pd.to_datetime(values, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(
            f"{where}: timestamp {values.iloc[first]!r} at {row_label(first)} in column {column!r} is "
            "neither a number nor a date/time; fix it or omit the timestamp column"
        )
    return parsed


def codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """Dense int64 codes of ``values`` in order of first appearance, and how many distinct."""
    found, uniques = pd.factorize(values, sort=False)
    return found.astype(np.int64, copy=False), len(uniques)


def drop_duplicates(df: pd.DataFrame, columns: Columns, policy: str, where: str,
                    rows: np.ndarray | None = None) -> tuple[pd.DataFrame, int]:
    """Apply the duplicates policy to repeated (user, item) pairs; returns ``(df, rows dropped)``.

    ``"last"`` / ``"first"`` keep that occurrence in file order; ``"error"`` raises naming the
    first repeated row and where its pair was first seen (``rows``: each row's position in the
    input, when some input rows were dropped before).
    """
    users, _ = codes(df[columns.user])
    items, n_items = codes(df[columns.item])
    key = users * max(n_items, 1) + items  # one int64 per pair, equal iff the pair is equal
    if policy == "error":
        dup = pd.Series(key).duplicated(keep="first").to_numpy()
        if dup.any():
            second = int(np.argmax(dup))
            first = int(np.argmax(key[:second] == key[second]))
            pair = f"({show_id(df[columns.user].iloc[second])}, {show_id(df[columns.item].iloc[second])})"
            if rows is not None:
                first, second = int(rows[first]), int(rows[second])
            raise DataError(
                f"{where}: duplicate (user, item) pair {pair} at {row_label(second)}, first seen at "
                f"{row_label(first)} ({int(dup.sum())} duplicate row(s)); remove them, or keep the "
                "last with --duplicates last (Python: duplicates='last')"
            )
        return df, 0
    dup = pd.Series(key).duplicated(keep=policy).to_numpy()
    if not dup.any():
        return df, 0
    return df.loc[~dup].reset_index(drop=True), int(dup.sum())
