"""Read interactions: a file, directory, glob or DataFrame -> validated (user, item, rating[, ts])."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from ..tables import CSV_SUFFIXES, TEXT_SUFFIXES, CsvDialect, missing_columns_error, read_table
from ..values import numeric_column
from .columns import COLUMN_HINT, Columns
from .settings import DUPLICATE_POLICIES
from .validate import (
    check_range,
    drop_duplicates,
    id_column,
    timestamp_column,
)


def read_interactions(
    source,
    columns: Columns = Columns(),
    *,
    rating_range: tuple[float, float] | None = None,
    duplicates: str = "last",
    missing_rating: float | None = None,
    dialect: CsvDialect | None = None,
) -> pd.DataFrame:
    """Read and validate (user, item, rating[, timestamp]) interactions.

    Parameters
    ----------
    source : str, path-like or pandas.DataFrame
        Anything :func:`recmodels.tables.read_table` reads (a CSV/TSV file, plain or compressed,
        with a header row; a Parquet file; a directory or glob of either), or a DataFrame.
    columns : Columns
        Which columns hold the user id, item id, rating and (optionally) timestamp.
    rating_range : (float, float) or None
        Inclusive bounds every rating must lie in; ``None`` (default) skips the check
        (training then reads the range from the training ratings).
    duplicates : {"last", "first", "error"}
        What to do with repeated (user, item) pairs: keep the last (or first) in file
        order and record how many were dropped in ``df.attrs["duplicates_dropped"]``, or
        raise naming the first repeated row.
    missing_rating : float or None
        A rating value that means "not rated" (Goodreads marks shelved-but-unrated books with
        0): rows holding it are dropped before the range check and the duplicates policy, and
        counted in ``df.attrs["missing_rating_dropped"]``. ``None`` (default): every row is a
        rating.
    dialect : recmodels.tables.CsvDialect, optional
        How delimited text is read: separator, header row or the column names (MovieLens'
        ``u.data``: ``CsvDialect(sep="tab", header=False, columns=...)``).

    Returns
    -------
    pandas.DataFrame
        Exactly the configured columns in the order user, item, rating[, timestamp], with a
        fresh ``RangeIndex``. Each id column is int64 or str, as the id rules of
        :mod:`recmodels.ids` decide for the whole column (CSV ids are read as text, so ``"0204"``
        stays a string id and ``204.0`` is 204); ratings are float32. ``df.attrs`` holds
        ``"source"`` and ``"duplicates_dropped"``, and with ``missing_rating`` also
        ``"missing_rating"`` and ``"missing_rating_dropped"``.

    Raises
    ------
    DataError
        Missing/empty/header-only file; missing columns (the message lists those that
        exist); non-numeric or NaN ratings; ratings outside ``rating_range``; empty ids or
        timestamps; duplicate pairs under ``duplicates="error"``. Rows are named as
        ``data row N`` (1-based, the header not counted).
    ConfigError
        An invalid ``duplicates`` policy, ``rating_range`` or ``missing_rating``.

    Examples
    --------
    >>> df = read_interactions("ratings.csv", Columns(item="book_id"))  # doctest: +SKIP
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}")
    if rating_range is not None:
        lo, hi = (float(v) for v in rating_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"rating range must be two finite numbers MIN < MAX, got {rating_range!r}")
    missing_rating = check_missing_rating(missing_rating)
    names = columns.names
    if len(set(names)) != len(names):
        raise ConfigError(f"column names must be distinct, got {names}")
    id_names = [columns.user, columns.item]
    rest = [c for c in names if c not in id_names]

    if isinstance(source, pd.DataFrame):
        where = "DataFrame"
        if any(c not in source.columns for c in names):
            available = [str(c) for c in source.columns]
            raise missing_columns_error(where, names, available, "interaction", COLUMN_HINT)
        frame = source[names].reset_index(drop=True)
        raw_ids = {c: frame[c] for c in id_names}
        empty = "has no rows"
    else:
        dialect = dialect or CsvDialect()
        table, where = read_table(source, names, text_columns=id_names, hint=COLUMN_HINT,
                                  dialect=dialect)
        raw_ids = {c: table.column(c) for c in id_names}
        frame = table.select(rest).to_pandas()
        csv = where.lower().endswith(CSV_SUFFIXES + TEXT_SUFFIXES) and dialect.header
        empty = "has a header but no data rows" if csv else "has no data rows"
    if len(frame) == 0:
        raise DataError(f"{where}: {empty}; nothing to train on")

    out = {c: id_column(raw_ids[c], where, c) for c in id_names}
    rating = numeric_column(frame[columns.rating], where, columns.rating)
    not_rated = np.zeros(len(rating), dtype=bool) if missing_rating is None else rating == missing_rating
    if rating_range is not None:
        check_range(np.where(not_rated, rating_range[0], rating), rating_range, where, columns.rating)
    out[columns.rating] = rating.astype(np.float32)
    if columns.timestamp is not None:
        out[columns.timestamp] = timestamp_column(frame[columns.timestamp], where, columns.timestamp)
    df = pd.DataFrame({name: pd.Series(out[name]).reset_index(drop=True) for name in names})
    rows = None  # each kept row's position in the input, for messages, once rows are dropped
    if not_rated.any():
        if not_rated.all():
            raise DataError(f"{where}: every rating is {missing_rating:g}, the 'not rated' value "
                            "(--missing-rating); nothing to train on")
        rows = np.flatnonzero(~not_rated)
        df = df.loc[~not_rated].reset_index(drop=True)
    df, dropped = drop_duplicates(df, columns, duplicates, where, rows=rows)
    df.attrs["source"] = where
    df.attrs["duplicates_dropped"] = dropped
    if missing_rating is not None:
        df.attrs["missing_rating"] = missing_rating
        df.attrs["missing_rating_dropped"] = int(not_rated.sum())
    return df


def check_missing_rating(value) -> float | None:
    """``value`` as a float (None stays None); anything but a finite number is a ConfigError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(float(value)):
        raise ConfigError(f"missing rating (--missing-rating) must be a finite number; got {value!r}")
    return float(value)
