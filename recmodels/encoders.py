"""Raw id <-> contiguous index maps with scikit-learn ``LabelEncoder`` semantics.

The classes are the sorted unique ids seen at fit time and an id's index is its
position among them, exactly as ``sklearn.preprocessing.LabelEncoder`` does, so
maps fitted here and there agree. This module is torch- and sklearn-free: the
scorer uses it on every batch. Maps are stored as one-column Parquet files
(column ``id``, row position = index), never pickle.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .errors import DataError, NotFittedError

UNKNOWN = -1
"""Index returned for ids the encoder never saw (and for null ids)."""

ID_KINDS = ("int64", "string")

# Below this span (max - min + 1) integer ids are mapped through a dense lookup
# table instead of a hash table: one gather per id, several times faster.
_MAX_LUT_SPAN = 1 << 25


def _to_numpy_with_nulls(ids) -> tuple[np.ndarray, np.ndarray | None]:
    """Return ``(values, null_mask)``; null positions hold an arbitrary value."""
    if isinstance(ids, (pa.ChunkedArray, pa.Array)):
        if ids.null_count:
            mask = pc.is_null(ids).to_numpy(zero_copy_only=False)
            fill = "" if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type) else 0
            ids = pc.fill_null(ids, fill)
        else:
            mask = None
        return ids.to_numpy(zero_copy_only=False), mask
    if isinstance(ids, (pd.Series, pd.Index)):
        mask = ids.isna().to_numpy()
        if not mask.any():
            mask = None
        if isinstance(ids.dtype, pd.StringDtype) or ids.dtype == object:
            values = ids.astype(object).to_numpy()
        elif mask is not None and pd.api.types.is_integer_dtype(ids.dtype):
            values = ids.to_numpy(dtype=np.int64, na_value=0)  # not float64: exact beyond 2**53
        elif mask is not None:
            values = ids.to_numpy(dtype=np.float64, na_value=0)
        else:
            values = ids.to_numpy()
        return values, mask
    values = np.asarray(ids)
    if values.dtype.kind == "U" and not isinstance(ids, np.ndarray):
        values = np.empty(len(ids), dtype=object)  # keep strings exactly (no NUL stripping)
        values[:] = list(ids)
    if values.dtype.kind == "f":
        mask = np.isnan(values)
        return values, (mask if mask.any() else None)
    if values.dtype == object:
        mask = pd.isna(values)
        return values, (mask if mask.any() else None)
    return values, None


def _as_str_objects(values: np.ndarray) -> np.ndarray:
    """Strings as an object array (numpy's fixed-width unicode would drop trailing NULs)."""
    if values.dtype == object and all(isinstance(v, str) for v in values[:64]):
        return values
    return pd.Series(values, dtype=object).astype(str).to_numpy(dtype=object)


def _id_kind(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind in "iub":
        return "int64"
    if kind == "f":
        return "float"
    if kind in "USO":
        return "string"
    return str(values.dtype)


class IdEncoder:
    """Map raw ids (int64 or string) to indices ``0..n-1`` in sorted-id order.

    Parameters
    ----------
    name : str, optional
        What the ids are (``"user"``, ``"item"``); used in error messages.

    Attributes
    ----------
    classes_ : ndarray of shape (n_ids,)
        Sorted unique ids; ``classes_[i]`` is the id of index ``i``.
    kind_ : {"int64", "string"}
        The id dtype the encoder was fitted on.

    Examples
    --------
    >>> enc = IdEncoder("user").fit([30, 10, 20, 10])
    >>> enc.transform([10, 30]).tolist()
    [0, 2]
    >>> enc.transform([99], unknown="mask").tolist()
    [-1]
    """

    def __init__(self, name: str = "id"):
        self.name = name

    # -- fitting -------------------------------------------------------------
    def fit(self, ids) -> IdEncoder:
        """Learn the sorted unique ids. Null ids are an error."""
        values, mask = _to_numpy_with_nulls(ids)
        if mask is not None:
            raise DataError(
                f"{mask.sum()} null {self.name} id(s) (first at row {int(np.argmax(mask)) + 1}); "
                "drop or fill them before fitting"
            )
        kind = _id_kind(values)
        if kind == "float":
            if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
                raise DataError(f"{self.name} ids must be integers or strings, got non-integral floats")
            values = values.astype(np.int64)
            kind = "int64"
        if kind == "int64":
            classes = np.unique(values.astype(np.int64, copy=False))
        elif kind == "string":
            classes = np.sort(pd.unique(_as_str_objects(values)))
        else:
            raise DataError(f"{self.name} ids have unsupported dtype {values.dtype}")
        return self._set_classes(classes, kind)

    @classmethod
    def from_classes(cls, classes, name: str = "id") -> IdEncoder:
        """Rebuild an encoder from its (sorted, unique) classes."""
        values = np.asarray(classes)
        kind = _id_kind(values) if values.size else "int64"
        if kind == "int64":
            values = values.astype(np.int64, copy=False)
        elif kind == "string":
            values = values.astype(object)
        else:
            raise DataError(f"{name} id map has unsupported dtype {values.dtype}")
        if values.size > 1:
            ordered = values[1:] > values[:-1]
            if not np.all(ordered):
                row = int(np.argmin(ordered)) + 1
                raise DataError(f"{name} id map is not sorted and unique (row {row})")
        return cls(name)._set_classes(values, kind)

    def _set_classes(self, classes: np.ndarray, kind: str) -> IdEncoder:
        self.classes_ = classes
        self.kind_ = kind
        self._index = pd.Index(classes)
        self._lut = None
        self._lut_offset = 0
        if kind == "int64" and classes.size:
            lo, hi = int(classes[0]), int(classes[-1])
            span = hi - lo + 1
            if span <= _MAX_LUT_SPAN and span <= 64 * classes.size + (1 << 16):
                lut = np.full(span, UNKNOWN, dtype=np.int64)
                lut[classes - lo] = np.arange(classes.size, dtype=np.int64)
                self._lut, self._lut_offset = lut, lo
        return self

    # -- using ---------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {self.name} IdEncoder is not fitted yet; call fit() first")

    def __len__(self) -> int:
        self._check_fitted()
        return int(self.classes_.size)

    def transform(self, ids, *, unknown: str = "mask") -> np.ndarray:
        """Map ids to indices.

        Parameters
        ----------
        ids : array-like, pandas Series or pyarrow array of shape (n,)
        unknown : {"mask", "error"}
            ``"mask"`` returns :data:`UNKNOWN` (-1) for ids not seen at fit time
            and for nulls; ``"error"`` raises :class:`DataError` naming the first one.

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        self._check_fitted()
        values, mask = _to_numpy_with_nulls(ids)
        kind = _id_kind(values)
        if self.kind_ == "int64":
            if kind == "float":
                bad = ~np.isfinite(values) | (values != np.round(values))
                if mask is not None:
                    bad &= ~mask
                if bad.any():
                    raise DataError(
                        f"{self.name} id {values[np.argmax(bad)].item()!r} "
                        f"(row {int(np.argmax(bad)) + 1}) is not "
                        "an integer; this model was trained with integer ids"
                    )
                values = np.where(mask, 0, values) if mask is not None else values
                values = values.astype(np.int64)
            elif kind == "string":
                raise DataError(
                    f"{self.name} ids are strings but this model was trained with integer ids; "
                    "pass integer ids (or retrain with string ids)"
                )
            elif kind != "int64":
                raise DataError(f"{self.name} ids have unsupported dtype {values.dtype}")
            out = self._transform_int(values.astype(np.int64, copy=False))
        else:
            values = _as_str_objects(values)
            out = self._index.get_indexer(values)
            out = out.astype(np.int64, copy=False)
        if mask is not None:
            out[mask] = UNKNOWN
        if unknown == "error":
            missing = out == UNKNOWN
            if missing.any():
                row = int(np.argmax(missing))
                value = values[row].item() if hasattr(values[row], "item") else values[row]
                what = "null" if mask is not None and mask[row] else repr(value)
                raise DataError(
                    f"unknown {self.name} id {what} at row {row + 1} "
                    f"({int(missing.sum())} unknown in all); "
                    "it was not in the training data"
                )
        elif unknown != "mask":
            raise ValueError(f"unknown must be 'mask' or 'error', got {unknown!r}")
        return out

    def _transform_int(self, values: np.ndarray) -> np.ndarray:
        if self._lut is not None:
            shifted = values - self._lut_offset
            inside = (shifted >= 0) & (shifted < self._lut.size)
            if inside.all():
                return self._lut[shifted]
            out = np.full(values.shape, UNKNOWN, dtype=np.int64)
            out[inside] = self._lut[shifted[inside]]
            return out
        return self._index.get_indexer(values).astype(np.int64, copy=False)

    def inverse_transform(self, indices) -> np.ndarray:
        """Map indices back to the raw ids; out-of-range indices raise ``IndexError``."""
        self._check_fitted()
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.classes_.size):
            raise IndexError(f"{self.name} index out of range 0..{self.classes_.size - 1}")
        return self.classes_[indices]

    # -- persistence ---------------------------------------------------------
    def to_arrow(self) -> pa.Table:
        """The map as an Arrow table with one column ``id`` (row position = index)."""
        self._check_fitted()
        typ = pa.int64() if self.kind_ == "int64" else pa.string()
        return pa.table({"id": pa.array(self.classes_, type=typ)})

    def save(self, path: str | os.PathLike) -> Path:
        """Write the map as Parquet (atomically: temp name, then rename)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(self.to_arrow(), tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, name: str = "id") -> IdEncoder:
        """Read a map written by :meth:`save`."""
        path = Path(path)
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise DataError(f"{path}: id map not found") from None
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: cannot read id map ({exc})") from None
        if table.column_names != ["id"]:
            raise DataError(f"{path}: id map must have exactly one column 'id', has {table.column_names}")
        column = table.column("id")
        if column.null_count:
            raise DataError(f"{path}: id map contains null ids")
        if pa.types.is_integer(column.type):
            classes = column.to_numpy().astype(np.int64)
        elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            classes = np.asarray(column.to_pylist(), dtype=object)
        else:
            raise DataError(f"{path}: id map column has unsupported type {column.type}")
        try:
            return cls.from_classes(classes, name=name)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        if not hasattr(self, "classes_"):
            return f"IdEncoder(name={self.name!r}, unfitted)"
        return f"IdEncoder(name={self.name!r}, n={self.classes_.size}, kind={self.kind_!r})"
