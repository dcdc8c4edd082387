"""The id rules: what a raw user or item id becomes, for every input kind (torch-free).

Training and scoring read ids from CSV text, Parquet columns of any type, DataFrames (numpy,
nullable, categorical) and Arrow batches. Every one of them goes through these rules, so a file
you trained on can always be scored, whatever format it is stored in.

**Fitting** (what kind of ids a training column holds, decided for the whole column):

1. Integer columns (any width, signed or unsigned, and booleans) are integer ids, except
   unsigned values beyond the int64 range, which make the column string ids (decimal text).
2. Float columns whose values are all finite, integral and below 2**53 in magnitude are integer
   ids (``204.0`` is 204). Other float columns are string ids, spelled as Python prints them.
3. Text columns (CSV cells, Parquet strings, object columns, categoricals and dictionary columns
   with text categories) are integer ids when every value is a *canonical integer spelling*:
   an optional ``-``, digits without leading zeros, optionally followed by ``.0`` (how float ids
   are written to CSV), within int64. Otherwise the whole column is string ids, kept exactly as
   written: ``"0204"``, ``"+204"`` and ``" 204"`` are then three ids distinct from ``"204"``.

**Mapping** a column onto ids of a known kind (an encoder's, a bundle's):

* integer ids: integers as they are; integral floats as integers; text in a canonical integer
  spelling as that integer. Anything else (``"0204"``, ``"abc"``, ``1.5``) cannot be an integer id
  of a column fitted by rule 3, so it is *unknown*;
* string ids: text as it is; integers as decimal text; floats as rule 2 spells them.

Nulls (empty cells, NaN, None) are never ids: training refuses them, scoring counts them as
unknown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ID_KINDS = ("int64", "string")
"""The two kinds of ids a map can hold."""

_CANONICAL_INT = r"^(0|-?[1-9][0-9]{0,18})(\.0*)?$"
_FLOAT_SUFFIX = r"\.0*$"
_INT64_MAX = np.iinfo(np.int64).max
_EXACT_FLOAT = 2.0**53


def as_arrow(ids) -> pa.Array:
    """Any id container as one Arrow array (dictionaries and categoricals decoded).

    Parameters
    ----------
    ids : pyarrow Array or ChunkedArray, pandas Series or Index, numpy array or sequence

    Returns
    -------
    pyarrow.Array
        Integer, floating, boolean or string typed; nulls where the input had NaN/None/NA.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    if isinstance(ids, pa.Array):
        arr = ids
    elif isinstance(ids, (pd.Series, pd.Index)):
        arr = _series_to_arrow(pd.Series(ids) if isinstance(ids, pd.Index) else ids)
    else:
        values = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
        if values.dtype.kind == "U" and not isinstance(ids, np.ndarray):
            values = np.array(list(ids), dtype=object)  # no fixed-width unicode: keep trailing NULs
        arr = _series_to_arrow(pd.Series(values))
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if pa.types.is_null(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _series_to_arrow(values: pd.Series) -> pa.Array:
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(values.dtype.categories.dtype if len(values.dtype.categories) else object)
    if values.dtype == object:
        present = values[values.notna()]
        if len(present) and not all(isinstance(v, str) for v in present):
            # mixed Python objects (ints and strings...): each id as its text
            kinds = {type(v) for v in present}
            if not kinds <= {int, np.int64, np.int32, bool, np.bool_}:
                values = values.map(lambda v: v if v is None or v != v else _text(v))
    try:
        arr = pa.Array.from_pandas(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        arr = pa.Array.from_pandas(values.map(lambda v: v if v is None or v != v else _text(v)))
    # a pyarrow-backed column (pandas' CSV reader: one chunk per ~262k rows) comes as several chunks
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and abs(value) < _EXACT_FLOAT:
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _nulls(arr: pa.Array) -> np.ndarray | None:
    """Null mask (NaN counts as null for floats), or None without nulls."""
    mask = None
    if arr.null_count:
        mask = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(arr.type):
        nan = pc.is_nan(arr).fill_null(False).to_numpy(zero_copy_only=False)
        if nan.any():
            mask = nan if mask is None else (mask | nan)
    return mask


def _int_values(arr: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """int64 values of an integer/bool array (nulls filled with 0) and where they do not fit."""
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    filled = arr.fill_null(0) if arr.null_count else arr
    if pa.types.is_uint64(arr.type):
        raw = filled.to_numpy(zero_copy_only=False)
        too_big = raw > _INT64_MAX
        if too_big.any():
            return np.where(too_big, 0, raw).astype(np.int64), too_big
        return raw.astype(np.int64), None
    return filled.cast(pa.int64()).to_numpy(zero_copy_only=False), None


def _float_integral(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < _EXACT_FLOAT)


def _parse_text_ints(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Text -> (int64 values, ok mask): ok where the text is a canonical integer spelling."""
    if not arr.null_count:
        # Fast path (4x the regex): every value casts, and printing it back gives the same text.
        try:
            as_int = arr.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            as_int = None
        if as_int is not None and pc.all(pc.equal(as_int.cast(pa.string()), arr)).as_py() is not False:
            return as_int.to_numpy(zero_copy_only=False), np.ones(len(arr), dtype=bool)
    ok_arr = pc.match_substring_regex(arr, _CANONICAL_INT).fill_null(False)
    ok = ok_arr.to_numpy(zero_copy_only=False)
    values = np.zeros(len(arr), dtype=np.int64)
    if not ok.any():
        return values, ok
    digits = pc.replace_substring_regex(arr.filter(ok_arr), _FLOAT_SUFFIX, "")
    try:
        values[ok] = digits.cast(pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, OverflowError):  # 19 digits beyond int64: rare, element by element
        parsed = [int(t) for t in digits.to_pylist()]
        fits = np.array([-_INT64_MAX - 1 <= v <= _INT64_MAX for v in parsed], dtype=bool)
        where = np.flatnonzero(ok)
        values[where[fits]] = np.array([v for v, f in zip(parsed, fits, strict=True) if f], np.int64)
        ok[where[~fits]] = False
    return values, ok


def fit_kind(ids) -> tuple[str, np.ndarray, np.ndarray | None]:
    """Decide a whole column's id kind (the fitting rules) and return its ids.

    Parameters
    ----------
    ids : any id container (see :func:`as_arrow`)

    Returns
    -------
    (kind, values, nulls)
        ``kind`` is ``"int64"`` or ``"string"``; ``values`` an int64 array or an object array of
        str (null positions hold an arbitrary value); ``nulls`` the null mask or None.
    """
    arr = as_arrow(ids)
    nulls = _nulls(arr)
    if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        values, too_big = _int_values(arr)
        if too_big is None:
            return "int64", values, nulls
        return "string", _strings(arr), nulls
    if pa.types.is_floating(arr.type):
        raw = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        present = np.ones(len(raw), bool) if nulls is None else ~nulls
        if _float_integral(raw[present]).all():
            return "int64", np.where(present, raw, 0).astype(np.int64), nulls
        return "string", _strings(arr), nulls
    if _is_text(arr):
        values, ok = _parse_text_ints(arr)
        present = np.ones(len(arr), bool) if nulls is None else ~nulls
        if ok[present].all():
            return "int64", values, nulls
        return "string", _strings(arr), nulls
    raise TypeError(f"unsupported id type {arr.type}")


def to_kind(ids, kind: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Map a column onto ids of ``kind`` (the mapping rules).

    Returns
    -------
    (values, invalid, nulls)
        ``values``: int64 array (``kind="int64"``) or object array of str; ``invalid``: where a
        value cannot be an id of that kind (so it is unknown), or None; ``nulls``: the null mask
        or None. Positions in either mask hold an arbitrary valid value.
    """
    arr = as_arrow(ids)
    nulls = _nulls(arr)
    if kind == "string":
        return _strings(arr), None, nulls
    if kind != "int64":
        raise ValueError(f"kind must be one of {ID_KINDS}, got {kind!r}")
    if pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        values, invalid = _int_values(arr)
        return values, invalid, nulls
    if pa.types.is_floating(arr.type):
        raw = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        integral = _float_integral(raw)
        values = np.where(integral, raw, 0).astype(np.int64)
        invalid = ~integral
        if nulls is not None:
            invalid &= ~nulls
        return values, (invalid if invalid.any() else None), nulls
    if _is_text(arr):
        values, ok = _parse_text_ints(arr)
        invalid = ~ok
        if nulls is not None:
            invalid &= ~nulls
        return values, (invalid if invalid.any() else None), nulls
    raise TypeError(f"unsupported id type {arr.type}")


def _strings(arr: pa.Array) -> np.ndarray:
    """The ids as an object array of str (rule 2 spelling for floats; nulls as "")."""
    if _is_text(arr):
        out = arr.fill_null("").to_numpy(zero_copy_only=False)
        return out.astype(object, copy=False)
    if pa.types.is_floating(arr.type):
        raw = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64)
        return np.array([_text(v) for v in raw], dtype=object)
    if pa.types.is_boolean(arr.type):
        arr = arr.cast(pa.int8())
    return arr.fill_null(0).cast(pa.string()).to_numpy(zero_copy_only=False).astype(object, copy=False)


def show_id(value) -> str:
    """An id for a message: numbers bare, strings quoted, nulls as ``null``."""
    if value is None or (isinstance(value, float) and value != value):
        return "null"
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def id_at(ids, position: int, kind: str | None = None):
    """The value at ``position`` of any id container, for messages: as ``kind`` reads it when
    it is a valid id of that kind (CSV text ``"424242"`` shows as 424242 for integer ids)."""
    arr = as_arrow(ids).slice(int(position), 1)
    value = arr[0].as_py()
    if value is None or (isinstance(value, float) and value != value):
        return None
    if kind is not None:
        values, invalid, _ = to_kind(arr, kind)
        if invalid is None:
            return values[0].item() if isinstance(values[0], np.generic) else values[0]
    return value
