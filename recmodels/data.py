"""Interaction data: read and validate ratings, split them, encode ids, describe them.

This module is torch- and scikit-learn-free. Files are read with pyarrow (CSV,
gzipped CSV, Parquet files and directories of Parquet files), validated, and
returned as a pandas DataFrame with exactly the configured columns. Every problem
a user can cause is a :class:`~recmodels.errors.DataError` whose one-line message
names the file, the 1-based data row (header not counted) or the column, and what
to do about it.

Typical use::

    cols = Columns(item="book_id")
    df = read_interactions("ratings.csv", cols)
    split = split_interactions(df, seed=0, columns=cols)
    users, items = fit_encoders(split.train, cols)
    train, report = encode(split.train, users, items, cols)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from .encoders import IdEncoder
from .errors import ConfigError, DataError
from .fileio import atomic_path

__all__ = [
    "Columns",
    "EncodedRatings",
    "Split",
    "describe",
    "encode",
    "fit_encoders",
    "format_stats",
    "load_encoded",
    "read_interactions",
    "read_table",
    "save_encoded",
    "split_interactions",
]

CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
DUPLICATE_POLICIES = ("last", "first", "error")
SPLIT_METHODS = ("random", "leave-last-out")
ENCODED_COLUMNS = ("user_index", "item_index", "rating")


@dataclass(frozen=True)
class Columns:
    """Names of the interaction columns.

    Parameters
    ----------
    user, item, rating : str
        Column names of the user id, item id and rating (the notebook's data uses
        ``Columns(item="book_id")``).
    timestamp : str or None
        Optional time column (integer epoch, float or date/time text); needed for
        ``split_interactions(method="leave-last-out")``.
    """

    user: str = "user_id"
    item: str = "item_id"
    rating: str = "rating"
    timestamp: str | None = None

    @property
    def names(self) -> list[str]:
        """The configured column names, in output order."""
        names = [self.user, self.item, self.rating]
        if self.timestamp is not None:
            names.append(self.timestamp)
        return names

    def to_dict(self) -> dict:
        """``{"user_col", "item_col", "rating_col", "timestamp_col"}`` (the run config's keys)."""
        return {
            "user_col": self.user,
            "item_col": self.item,
            "rating_col": self.rating,
            "timestamp_col": self.timestamp,
        }


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _row(position: int) -> str:
    """Human row reference for a 0-based position: 1-based data row, header not counted."""
    return f"row {int(position) + 1} (1-based data row, header not counted)"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def _csv_options(path: Path, column_types: dict | None = None, include: list[str] | None = None):
    delimiter = "\t" if _suffix(path).startswith(".tsv") else ","
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(
        column_types=column_types or {},
        include_columns=include or [],
        strings_can_be_null=True,
    )
    return parse, convert


def _csv_column_names(path: Path) -> list[str]:
    parse, _ = _csv_options(path)
    with pacsv.open_csv(path, parse_options=parse) as reader:
        return reader.schema.names


def _missing_columns_error(where: str, wanted: list[str], available: list[str], what: str) -> DataError:
    missing = [c for c in wanted if c not in available]
    shown = ", ".join(repr(c) for c in available[:20]) + (" ..." if len(available) > 20 else "")
    return DataError(
        f"{where}: missing {what} column(s) {', '.join(repr(c) for c in missing)}; "
        f"the columns are {shown}; name the right ones with --user-col/--item-col/"
        "--rating-col/--timestamp-col (or Columns(...))"
    )


def read_table(
    source, wanted: list[str] | None, *, what: str = "interaction", text_columns: tuple = ()
) -> tuple[pa.Table, str]:
    """Read a CSV/Parquet file or Parquet directory into an Arrow table.

    Parameters
    ----------
    source : str or path-like
        ``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet`` file, or a directory of Parquet files.
    wanted : list of str or None
        Columns to read (all when ``None``); missing ones raise :class:`DataError` listing
        the columns that exist.
    what : str
        What the file holds, for messages.
    text_columns : tuple of str
        CSV columns read as text rather than type-inferred (id columns: ``"007"`` must not
        become ``7``; :func:`arrow_ids` turns integral text back into int64).

    Returns
    -------
    (pyarrow.Table, str)
        The table (columns in ``wanted`` order) and the display name of the source.

    Raises
    ------
    DataError
        Missing, empty, header-only (when ``wanted`` is given, checked by the caller) or
        unreadable file, or missing columns.
    """
    path = Path(source)
    where = str(path)
    if not path.exists():
        raise DataError(f"{where}: {what} file not found; check the path")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and _suffix(p) in PARQUET_SUFFIXES)
        if not files:
            raise DataError(f"{where}: directory holds no .parquet files; pass a file or a Parquet directory")
        try:
            dataset = pads.dataset([str(p) for p in files], format="parquet")
            available = dataset.schema.names
            if wanted is not None and any(c not in available for c in wanted):
                raise _missing_columns_error(where, wanted, available, what)
            table = dataset.to_table(columns=wanted)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{where}: cannot read Parquet files ({_first_line(exc)})") from None
        return table, where
    if path.stat().st_size == 0:
        raise DataError(f"{where}: {what} file is empty; it needs a header and data rows")
    suffix = _suffix(path)
    if suffix in PARQUET_SUFFIXES:
        try:
            available = pq.read_schema(path).names
            if wanted is not None and any(c not in available for c in wanted):
                raise _missing_columns_error(where, wanted, available, what)
            table = pq.read_table(path, columns=wanted)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{where}: cannot read Parquet file ({_first_line(exc)})") from None
        return table, where
    if suffix not in CSV_SUFFIXES:
        raise DataError(
            f"{where}: unsupported file type {suffix or '(no suffix)'!r}; "
            "use .csv, .csv.gz, .tsv, .parquet or a directory of .parquet files"
        )
    try:
        available = _csv_column_names(path)
    except pa.ArrowInvalid as exc:
        if "empty" in str(exc).lower():
            raise DataError(f"{where}: {what} file is empty; it needs a header and data rows") from None
        raise DataError(f"{where}: cannot parse CSV ({_first_line(exc)})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({_first_line(exc)})") from None
    if wanted is not None and any(c not in available for c in wanted):
        raise _missing_columns_error(where, wanted, available, what)
    include = list(wanted) if wanted is not None else list(available)
    types = {c: pa.string() for c in text_columns if c in include}
    parse, convert = _csv_options(path, types, include=include)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid:
        # Type inference is done on the first block; a later block that disagrees
        # (e.g. "abc" in a numeric column) fails the read. Re-read everything as text and
        # let the column checks below name the first bad row.
        parse, convert = _csv_options(path, {c: pa.string() for c in include}, include)
        try:
            table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{where}: cannot parse CSV ({_first_line(exc)})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({_first_line(exc)})") from None
    return table, where


_NOT_CANONICAL_INT = r"^[+-]?0\d|^\+|^\s|\s$|^-0$"


def arrow_ids(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text ids that are all canonical integers (no leading zeros or signs) as int64.

    Other columns are returned unchanged; :func:`normalize_ids` finishes the job.
    """
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column
    if column.null_count:
        return column
    try:
        as_int = pc.cast(column, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column
    if len(column) and pc.any(pc.match_substring_regex(column, _NOT_CANONICAL_INT)).as_py():
        return column
    return as_int


def _show(value) -> str:
    """An id for a message: numbers bare, strings quoted."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_INT64_MAX = np.iinfo(np.int64).max


def normalize_ids(values: pd.Series, where: str, column: str) -> pd.Series:
    """Return ids as int64 when all are integral numbers, else as strings.

    Null ids raise :class:`DataError` naming the first null row.
    """
    _reject_empty(values, where, column, "id")
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return values.astype(np.int64)
    if pd.api.types.is_integer_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype) and len(values) and values.max() > _INT64_MAX:
            return values.astype(str)  # beyond int64 (e.g. uint64 hashes): string ids, as in a CSV
        return values.astype(np.int64)
    if pd.api.types.is_float_dtype(dtype):
        arr = values.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
            return pd.Series(arr.astype(np.int64), index=values.index, name=values.name)
        return values.astype(str)
    text = values.astype(str)
    # integral text ids become int64 ("00123" excepted: leading zeros make a string id)
    converted = arrow_ids(pa.chunked_array([pa.array(text.to_numpy(dtype=object), pa.string())]))
    if pa.types.is_integer(converted.type):
        return pd.Series(converted.to_numpy(), index=values.index, name=values.name)
    return text


def _numeric_column(values: pd.Series, where: str, column: str, what: str = "rating") -> np.ndarray:
    """float64 values of a column; non-numeric, empty or NaN cells raise naming the first row."""
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{where}: column {column!r} is boolean, expected numeric {what}s")
    if pd.api.types.is_numeric_dtype(values.dtype):
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raw = values.iloc[first]
        shown = "empty" if pd.isna(raw) else _show(raw)
        raise DataError(
            f"{where}: {what} at {_row(first)} in column {column!r} is {shown}, not a number "
            f"({int(bad.sum())} such row(s)); fix or drop them"
        )
    return arr


def _reject_empty(values: pd.Series, where: str, column: str, what: str) -> None:
    """Raise :class:`DataError` naming the first empty cell of ``values``, if any."""
    null = values.isna().to_numpy()
    if null.any():
        first = int(np.argmax(null))
        raise DataError(
            f"{where}: {int(null.sum())} empty {what}(s) in column {column!r}, first at {_row(first)}; "
            "drop or fill those rows"
        )


def _timestamp_column(values: pd.Series, where: str, column: str) -> pd.Series:
    _reject_empty(values, where, column, "timestamp")
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
            f"{where}: timestamp {values.iloc[first]!r} at {_row(first)} in column {column!r} is "
            "neither a number nor a date/time; fix it or omit the timestamp column"
        )
    return parsed


def read_interactions(
    source,
    columns: Columns = Columns(),
    *,
    rating_range: tuple[float, float] | None = (1.0, 5.0),
    duplicates: str = "last",
) -> pd.DataFrame:
    """Read and validate (user, item, rating[, timestamp]) interactions.

    Parameters
    ----------
    source : str, path-like or pandas.DataFrame
        A ``.csv``/``.csv.gz``/``.tsv`` file (header row required), a ``.parquet`` file,
        a directory of Parquet files, or a DataFrame.
    columns : Columns
        Which columns hold the user id, item id, rating and (optionally) timestamp.
    rating_range : (float, float) or None
        Inclusive bounds every rating must lie in; ``None`` skips the check.
    duplicates : {"last", "first", "error"}
        What to do with repeated (user, item) pairs: keep the last (or first) in file
        order and record how many were dropped in ``df.attrs["duplicates_dropped"]``, or
        raise naming the first repeated row.

    Returns
    -------
    pandas.DataFrame
        Exactly the configured columns in the order user, item, rating[, timestamp], with a
        fresh ``RangeIndex``. Ids are int64 when every id is integral, else strings; ratings
        are float32. ``df.attrs`` holds ``"source"`` and ``"duplicates_dropped"``.

    Raises
    ------
    DataError
        Missing/empty/header-only file; missing columns (the message lists those that
        exist); non-numeric or NaN ratings; ratings outside ``rating_range``; empty ids or
        timestamps; duplicate pairs under ``duplicates="error"``. Rows are 1-based data rows
        (the header is not counted).
    ConfigError
        An invalid ``duplicates`` policy or ``rating_range``.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {duplicates!r}")
    if rating_range is not None:
        lo, hi = (float(v) for v in rating_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ConfigError(f"rating range must be two finite numbers MIN < MAX, got {rating_range!r}")
    names = columns.names
    if len(set(names)) != len(names):
        raise ConfigError(f"column names must be distinct, got {names}")

    if isinstance(source, pd.DataFrame):
        where = "DataFrame"
        if any(c not in source.columns for c in names):
            raise _missing_columns_error(where, names, [str(c) for c in source.columns], "interaction")
        frame = source[names].reset_index(drop=True)
    else:
        table, where = read_table(source, names, text_columns=(columns.user, columns.item))
        for col in (columns.user, columns.item):
            table = table.set_column(table.schema.get_field_index(col), col, arrow_ids(table[col]))
        frame = table.to_pandas()[names]
    if len(frame) == 0:
        what = "has no rows" if where == "DataFrame" else "has a header but no data rows"
        raise DataError(f"{where}: {what}; nothing to train on")

    out = {
        columns.user: normalize_ids(frame[columns.user], where, columns.user),
        columns.item: normalize_ids(frame[columns.item], where, columns.item),
    }
    rating = _numeric_column(frame[columns.rating], where, columns.rating)
    if rating_range is not None:
        lo, hi = (float(v) for v in rating_range)
        bad = (rating < lo) | (rating > hi)
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(
                f"{where}: rating {rating[first]:g} at {_row(first)} in column {columns.rating!r} is "
                f"outside [{lo:g}, {hi:g}] ({int(bad.sum())} such row(s)); fix the data or set the "
                "rating range to match it"
            )
    out[columns.rating] = rating.astype(np.float32)
    if columns.timestamp is not None:
        out[columns.timestamp] = _timestamp_column(frame[columns.timestamp], where, columns.timestamp)
    df = pd.DataFrame({name: pd.Series(out[name]).reset_index(drop=True) for name in names})

    key = _pair_keys(df[columns.user], df[columns.item])
    if duplicates == "error":
        dup = pd.Series(key).duplicated(keep="first").to_numpy()
        if dup.any():
            second = int(np.argmax(dup))
            first = int(np.argmax(key[:second] == key[second]))
            raise DataError(
                f"{where}: duplicate (user, item) pair ({_show(df[columns.user].iloc[second])}, "
                f"{_show(df[columns.item].iloc[second])}) at {_row(second)}, first seen at row {first + 1} "
                f"({int(dup.sum())} duplicate row(s)); remove them or keep the last with "
                "duplicates='last'"
            )
        dropped = 0
    else:
        dup = pd.Series(key).duplicated(keep=duplicates).to_numpy()
        dropped = int(dup.sum())
        if dropped:
            df = df.loc[~dup].reset_index(drop=True)
    df.attrs["source"] = where
    df.attrs["duplicates_dropped"] = dropped
    return df


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64, copy=False), len(uniques)


def _pair_keys(users: pd.Series, items: pd.Series) -> np.ndarray:
    """One int64 per (user, item) pair, equal iff the pair is equal."""
    u, _ = _codes(users)
    i, n_items = _codes(items)
    return u * max(n_items, 1) + i


# ---------------------------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------------------------
@dataclass
class Split:
    """Train/validation/test partition of interactions.

    Attributes
    ----------
    train, valid, test : pandas.DataFrame
        The parts (rows keep their original relative order, fresh index).
    method : str
        ``"random"`` or ``"leave-last-out"``.
    seed : int
        Seed of the permutation (recorded for leave-last-out too, which does not use it).
    fractions : tuple of float or None
        Train/valid/test fractions of a random split; ``None`` for leave-last-out.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    method: str
    seed: int
    fractions: tuple | None

    def sizes(self) -> dict[str, int]:
        """``{"train": n, "valid": n, "test": n}``."""
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def to_dict(self) -> dict:
        """JSON-able description (the run config's ``data.split``)."""
        return {
            "method": self.method,
            "seed": int(self.seed),
            "fractions": list(self.fractions) if self.fractions is not None else None,
            **self.sizes(),
        }


def _check_fractions(fractions) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ConfigError(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(values) != 3 or any(not math.isfinite(f) or f <= 0 for f in values):
        raise ConfigError(
            f"split fractions must be three positive numbers (train, valid, test), got {fractions!r}"
        )
    if abs(math.fsum(values) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {fractions!r} (sum {math.fsum(values):g})")
    return values


def _cuts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    # The small epsilon keeps 0.7 + 0.2 from flooring 0.8999999 * 10 to 8.
    a = int(math.floor(fractions[0] * n + 1e-9))
    b = int(math.floor((fractions[0] + fractions[1]) * n + 1e-9))
    return a, b


def _rows_needed(fractions: tuple[float, float, float]) -> int:
    for n in range(3, 10_000_000):
        a, b = _cuts(n, fractions)
        if a >= 1 and b - a >= 1 and n - b >= 1:
            return n
    return 10_000_000  # pragma: no cover


def split_interactions(
    df: pd.DataFrame,
    *,
    method: str = "random",
    fractions=(0.7, 0.2, 0.1),
    seed: int = 0,
    columns: Columns = Columns(),
) -> Split:
    """Split interactions into train, validation and test parts.

    Parameters
    ----------
    df : pandas.DataFrame
        Interactions as returned by :func:`read_interactions`.
    method : {"random", "leave-last-out"}
        ``"random"``: a seeded permutation cut at the cumulative ``fractions`` (as the
        notebook's ``np.split(df.sample(frac=1), ...)``). ``"leave-last-out"``: per user, the
        latest interaction by ``columns.timestamp`` goes to test and the one before it to
        valid; users with fewer than 3 interactions keep all of theirs in train. Timestamp
        ties are broken by row order.
    fractions : (float, float, float)
        Train/valid/test fractions of a random split; positive, summing to 1.
    seed : int
        Seed of the random permutation; the same seed gives the same split.
    columns : Columns
        Column names (``columns.timestamp`` is required for leave-last-out).

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        Unknown method, bad fractions, or leave-last-out without a timestamp column.
    DataError
        Too few rows (or users with 3+ interactions) for every part to be non-empty.
    """
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split method must be one of {', '.join(SPLIT_METHODS)}, got {method!r}")
    n = len(df)
    if method == "random":
        fr = _check_fractions(fractions)
        a, b = _cuts(n, fr)
        if a < 1 or b - a < 1 or n - b < 1:
            raise DataError(
                f"{n} interaction(s) are too few for a {fr[0]:g}/{fr[1]:g}/{fr[2]:g} split: at least "
                f"{_rows_needed(fr)} rows are needed so that train, valid and test are all non-empty"
            )
        perm = np.random.default_rng(seed).permutation(n)
        parts = [np.sort(perm[:a]), np.sort(perm[a:b]), np.sort(perm[b:])]
        return Split(*(_take(df, p) for p in parts), method=method, seed=int(seed), fractions=fr)

    if columns.timestamp is None:
        raise ConfigError(
            "leave-last-out split needs a timestamp column; set one (--timestamp-col) or use "
            "the random split"
        )
    for col in (columns.user, columns.timestamp):
        if col not in df.columns:
            raise DataError(f"leave-last-out split: column {col!r} not in the data ({list(df.columns)})")
    if n == 0:
        raise DataError("leave-last-out split: no interactions; at least 3 rows of one user are needed")
    users, _ = _codes(df[columns.user])
    ts = _sortable(df[columns.timestamp], columns.timestamp)
    order = np.lexsort((np.arange(n), ts, users))
    sorted_users = users[order]
    counts = np.bincount(users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(n) - starts[sorted_users]
    from_end = counts[sorted_users] - 1 - rank
    eligible = counts[sorted_users] >= 3
    part = np.zeros(n, dtype=np.int8)
    part[order[eligible & (from_end == 0)]] = 2
    part[order[eligible & (from_end == 1)]] = 1
    if not (part == 2).any() or not (part == 0).any():
        raise DataError(
            f"leave-last-out split needs at least one user with 3 or more interactions; "
            f"the {n} row(s) have none (most per user: {int(counts.max())})"
        )
    parts = [np.flatnonzero(part == k) for k in range(3)]
    return Split(*(_take(df, p) for p in parts), method=method, seed=int(seed), fractions=None)


def _sortable(values: pd.Series, column: str) -> np.ndarray:
    if values.isna().any():
        raise DataError(f"timestamp column {column!r} has empty values; fill or drop them")
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = _timestamp_column(values, "data", column)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64)
    if isinstance(values.dtype, pd.DatetimeTZDtype):  # tz-aware: compare as UTC instants
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.to_numpy().astype("datetime64[ns]").astype(np.int64)


def _take(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    part = df.iloc[rows].reset_index(drop=True)
    part.attrs = dict(df.attrs)
    return part


# ---------------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------------
def fit_encoders(train: pd.DataFrame, columns: Columns = Columns()) -> tuple[IdEncoder, IdEncoder]:
    """Fit the user and item id encoders on the training interactions.

    Returns
    -------
    (IdEncoder, IdEncoder)
        User and item encoders (``LabelEncoder`` semantics: index = rank of the sorted id).
    """
    for col in (columns.user, columns.item):
        if col not in train.columns:
            raise DataError(f"training data has no column {col!r} (columns: {list(train.columns)})")
    return (
        IdEncoder("user").fit(train[columns.user]),
        IdEncoder("item").fit(train[columns.item]),
    )


@dataclass
class EncodedRatings:
    """Interactions as contiguous indices, ready for a model.

    Attributes
    ----------
    user_index, item_index : ndarray of int64
    rating : ndarray of float32
    """

    user_index: np.ndarray
    item_index: np.ndarray
    rating: np.ndarray
    meta: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.user_index = np.ascontiguousarray(self.user_index, dtype=np.int64)
        self.item_index = np.ascontiguousarray(self.item_index, dtype=np.int64)
        self.rating = np.ascontiguousarray(self.rating, dtype=np.float32)
        n = self.user_index.shape[0]
        if self.item_index.shape != (n,) or self.rating.shape != (n,) or self.user_index.ndim != 1:
            raise ValueError("user_index, item_index and rating must be 1-D arrays of one length")

    def __len__(self) -> int:
        return int(self.user_index.shape[0])

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with columns ``user_index``, ``item_index``, ``rating``."""
        return pd.DataFrame(
            {"user_index": self.user_index, "item_index": self.item_index, "rating": self.rating}
        )


def encode(
    df: pd.DataFrame, user_encoder: IdEncoder, item_encoder: IdEncoder, columns: Columns = Columns()
) -> tuple[EncodedRatings, dict]:
    """Map raw ids to indices, dropping rows whose user or item the encoders never saw.

    Returns
    -------
    (EncodedRatings, dict)
        The kept rows and ``{"rows", "kept", "unknown_users", "unknown_items"}`` (the last
        two count rows, not distinct ids).
    """
    for col in (columns.user, columns.item, columns.rating):
        if col not in df.columns:
            raise DataError(f"data has no column {col!r} (columns: {list(df.columns)})")
    users = user_encoder.transform(df[columns.user], unknown="mask")
    items = item_encoder.transform(df[columns.item], unknown="mask")
    ratings = df[columns.rating].to_numpy(dtype=np.float32)
    unknown_user = users < 0
    unknown_item = items < 0
    keep = ~(unknown_user | unknown_item)
    report = {
        "rows": int(len(df)),
        "kept": int(keep.sum()),
        "unknown_users": int(unknown_user.sum()),
        "unknown_items": int(unknown_item.sum()),
    }
    if keep.all():
        return EncodedRatings(users, items, ratings), report
    return EncodedRatings(users[keep], items[keep], ratings[keep]), report


def save_encoded(encoded: EncodedRatings, path: str | os.PathLike) -> Path:
    """Write encoded ratings as Parquet (``user_index``, ``item_index``, ``rating``), atomically."""
    table = pa.table(
        {
            "user_index": pa.array(encoded.user_index, type=pa.int64()),
            "item_index": pa.array(encoded.item_index, type=pa.int64()),
            "rating": pa.array(encoded.rating, type=pa.float32()),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def load_encoded(path: str | os.PathLike) -> EncodedRatings:
    """Read ratings written by :func:`save_encoded`.

    Raises
    ------
    DataError
        Missing or unreadable file, or wrong columns.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: encoded ratings file not found")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: cannot read encoded ratings ({_first_line(exc)})") from None
    missing = [c for c in ENCODED_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: encoded ratings lack column(s) {missing} (has {table.column_names})"
        )
    if any(table.column(c).null_count for c in ENCODED_COLUMNS):
        raise DataError(f"{path}: encoded ratings contain nulls; rewrite the file")
    return EncodedRatings(
        table.column("user_index").to_numpy(),
        table.column("item_index").to_numpy(),
        table.column("rating").to_numpy(),
    )


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
QUANTILES = {"min": 0.0, "p10": 0.1, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99,
             "max": 1.0}
MAX_HISTOGRAM_VALUES = 50


def _number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else value


def _count_quantiles(counts: np.ndarray) -> dict:
    if counts.size == 0:
        return {name: 0 for name in QUANTILES} | {"mean": 0.0, "with_one": 0}
    q = np.quantile(counts, list(QUANTILES.values()), method="linear")
    out = {name: _number(round(float(v), 2)) for name, v in zip(QUANTILES, q, strict=True)}
    out["mean"] = round(float(counts.mean()), 3)
    out["with_one"] = int((counts == 1).sum())
    return out


def describe(df: pd.DataFrame, columns: Columns = Columns()) -> dict:
    """The notebook's statistics plus activity quantiles, as a JSON-able dict.

    Returns
    -------
    dict
        ``users``, ``items``, ``interactions``, ``density`` (interactions / (users * items)),
        ``rating_mean``, ``rating_std``, ``rating_min``, ``rating_max``, ``rating_histogram``
        (``{rating value: count}``, or ``{"[lo, hi)": count}`` bins when there are more than 50
        distinct values), ``per_user`` and ``per_item`` (count quantiles ``min``, ``p10`` ...
        ``max``, ``mean`` and ``with_one``, the number with a single interaction),
        ``duplicates_dropped`` (from ``df.attrs``), and ``timestamp_min``/``timestamp_max``
        when a timestamp column is configured.
    """
    n = int(len(df))
    users, n_users = _codes(df[columns.user]) if n else (np.zeros(0, np.int64), 0)
    items, n_items = _codes(df[columns.item]) if n else (np.zeros(0, np.int64), 0)
    rating = df[columns.rating].to_numpy(dtype=np.float64) if n else np.zeros(0)
    stats: dict = {
        "users": n_users,
        "items": n_items,
        "interactions": n,
        "density": (n / (n_users * n_items)) if n_users and n_items else 0.0,
    }
    if n:
        stats.update(
            rating_mean=float(rating.mean()),
            rating_std=float(rating.std()),
            rating_min=_number(rating.min()),
            rating_max=_number(rating.max()),
        )
        values, counts = np.unique(rating, return_counts=True)
        if values.size <= MAX_HISTOGRAM_VALUES:
            stats["rating_histogram"] = {_number(v): int(c) for v, c in zip(values, counts, strict=True)}
        else:
            edges = np.linspace(rating.min(), rating.max(), 11)
            binned, _ = np.histogram(rating, bins=edges)
            stats["rating_histogram"] = {
                f"[{lo:.3g}, {hi:.3g}{']' if k == 9 else ')'}": int(c)
                for k, (lo, hi, c) in enumerate(zip(edges[:-1], edges[1:], binned, strict=True))
            }
    else:
        stats.update(rating_mean=None, rating_std=None, rating_min=None, rating_max=None,
                     rating_histogram={})
    stats["per_user"] = _count_quantiles(np.bincount(users, minlength=n_users) if n else np.zeros(0))
    stats["per_item"] = _count_quantiles(np.bincount(items, minlength=n_items) if n else np.zeros(0))
    stats["duplicates_dropped"] = int(df.attrs.get("duplicates_dropped", 0))
    if columns.timestamp is not None and columns.timestamp in df.columns and n:
        ts = df[columns.timestamp]
        stats["timestamp_min"] = _scalar(ts.min())
        stats["timestamp_max"] = _scalar(ts.max())
    return stats


def _scalar(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def format_stats(stats: dict) -> str:
    """Render :func:`describe` output as readable lines (like the notebook's prints)."""
    users, items, n = stats["users"], stats["items"], stats["interactions"]
    lines = [
        f"Users:         {users:,}",
        f"Items:         {items:,}",
        f"Interactions:  {n:,}",
        f"Density:       {n:,}/{users * items:,} ... {round(100 * stats['density'], 4)} %",
    ]
    if stats.get("duplicates_dropped"):
        lines.append(f"Duplicates:    {stats['duplicates_dropped']:,} repeated (user, item) rows dropped")
    if n:
        lines.append(
            f"Ratings:       mean {stats['rating_mean']:.4f}, std {stats['rating_std']:.4f}, "
            f"min {stats['rating_min']}, max {stats['rating_max']}"
        )
        hist = stats.get("rating_histogram") or {}
        peak = max(hist.values()) if hist else 1
        for value, count in hist.items():
            bar = "#" * max(1, round(30 * count / peak)) if count else ""
            lines.append(f"  {str(value):>10}  {count:>12,}  {100 * count / n:5.1f} %  {bar}")
    for role, key in (("user", "per_user"), ("item", "per_item")):
        q = stats.get(key)
        if not q:
            continue
        lines.append(
            f"Per {role}:      mean {q['mean']}, min {q['min']}, p10 {q['p10']}, p25 {q['p25']}, "
            f"median {q['median']}, p75 {q['p75']}, p90 {q['p90']}, p99 {q['p99']}, max {q['max']}; "
            f"{q['with_one']:,} with one interaction"
        )
    if "timestamp_min" in stats:
        lines.append(f"Timestamps:    {stats['timestamp_min']} .. {stats['timestamp_max']}")
    return "\n".join(lines)
