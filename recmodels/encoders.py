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
import pyarrow.parquet as pq

from .errors import DataError, NotFittedError, first_line, row_label
from .ids import fit_kind, id_at, show_id, to_kind

UNKNOWN = -1
"""Index returned for ids the encoder never saw (and for null ids)."""

# Below this span (max - min + 1) integer ids are mapped through a dense lookup table instead of
# a hash table: one gather per id, several times faster. 256 MB of int64 at most, and never more
# than 64 slots per id (sparser id ranges use the hash table).
_MAX_LUT_SPAN = 1 << 25


def _kind_of_classes(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind in "iub":
        return "int64"
    if kind in "USO":
        return "string"
    return str(values.dtype)


def unknown_id_error(role: str, value, position: int, count: int | None, *, where: str | None = None,
                     hint: str = "it was not in the training data") -> DataError:
    """The one message for an unknown (or null) id, used by training, Python and the CLI.

    ``position`` is the 0-based row among the data rows (named with :func:`row_label`);
    ``count`` the number of unknown rows in all, when known.
    """
    prefix = f"{where}: " if where else ""
    total = f" ({count:,} unknown in all)" if count is not None else ""
    return DataError(f"{prefix}unknown {role} id {show_id(value)} at {row_label(position)}{total}; {hint}")


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
        """Learn the sorted unique ids (kind by :mod:`recmodels.ids`' rules). Null ids are an error."""
        try:
            kind, values, nulls = fit_kind(ids)
        except TypeError as exc:
            raise DataError(f"{self.name} ids: {exc}") from None
        if nulls is not None:
            raise DataError(
                f"{int(nulls.sum())} null {self.name} id(s) (first at {row_label(int(np.argmax(nulls)))}); "
                "drop or fill them before fitting"
            )
        classes = np.unique(values) if kind == "int64" else np.sort(pd.unique(values))
        return self._set_classes(classes, kind)

    @classmethod
    def from_classes(cls, classes, name: str = "id") -> IdEncoder:
        """Rebuild an encoder from its (sorted, unique) classes."""
        values = np.asarray(classes)
        kind = _kind_of_classes(values) if values.size else "int64"
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
                raise DataError(f"{name} id map is not sorted and unique ({row_label(row)})")
        return cls(name)._set_classes(values, kind)

    def _set_classes(self, classes: np.ndarray, kind: str) -> IdEncoder:
        self.classes_ = classes
        self.kind_ = kind
        self._index = pd.Index(classes)
        self._lut = None
        if kind == "int64" and classes.size:
            lo, hi = int(classes[0]), int(classes[-1])
            span = hi - lo + 1
            if span <= _MAX_LUT_SPAN and span <= 64 * classes.size + (1 << 16):
                lut = np.full(span + 1, UNKNOWN, dtype=np.int64)  # slot `span`: every id outside
                lut[classes - lo] = np.arange(classes.size, dtype=np.int64)
                self._lut, self._lo, self._span = lut, np.int64(lo), np.uint64(span)
        return self

    # -- using ---------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {self.name} IdEncoder is not fitted yet; call fit() first")

    def __len__(self) -> int:
        self._check_fitted()
        return int(self.classes_.size)

    def transform(self, ids, *, unknown: str = "mask", where: str | None = None) -> np.ndarray:
        """Map ids to indices.

        Parameters
        ----------
        ids : array-like, pandas Series or pyarrow array of shape (n,)
            Any input kind; values are read by :mod:`recmodels.ids`' mapping rules (an integer
            encoder maps ``204``, ``204.0`` and ``"204"`` alike; ``"0204"`` is unknown to it).
        unknown : {"mask", "error"}
            ``"mask"`` returns :data:`UNKNOWN` (-1) for ids not seen at fit time
            and for nulls; ``"error"`` raises :class:`DataError` naming the first one.
        where : str, optional
            The input's name, for the error message.

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        if unknown not in ("mask", "error"):
            raise ValueError(f"unknown must be 'mask' or 'error', got {unknown!r}")
        out = self.lookup(ids)[0]
        if unknown == "error":
            missing = out == UNKNOWN
            if missing.any():
                row = int(np.argmax(missing))
                value = id_at(ids, row, self.kind_)
                raise unknown_id_error(self.name, value, row, int(missing.sum()), where=where)
        return out

    def lookup(self, ids) -> tuple[np.ndarray, np.ndarray | None]:
        """Indices of ``ids`` (:data:`UNKNOWN` for unknown and null ids) and the null mask (or None).

        The scorer's hot path: an int64 Arrow array without nulls costs one subtraction, one
        clamp and one table read per id.
        """
        self._check_fitted()
        if (
            self._lut is not None
            and isinstance(ids, pa.Array)
            and ids.type == pa.int64()
            and ids.null_count == 0
        ):
            return self._lut_lookup(ids.to_numpy()), None
        try:
            values, invalid, nulls = to_kind(ids, self.kind_)
        except TypeError as exc:
            raise DataError(f"{self.name} ids: {exc}") from None
        if self.kind_ == "int64":
            if self._lut is not None:
                out = self._lut_lookup(values)
            else:
                out = self._index.get_indexer(values).astype(np.int64, copy=False)
        else:
            out = self._index.get_indexer(values).astype(np.int64, copy=False)
        if invalid is not None:
            out[invalid] = UNKNOWN
        if nulls is not None:
            out[nulls] = UNKNOWN
        return out, nulls

    def _lut_lookup(self, values: np.ndarray) -> np.ndarray:
        # ids outside [lo, lo + span) wrap to >= span as unsigned (int64 differences wrap modulo
        # 2**64 and stay >= span, since lo + span - 1 <= int64 max) and are clamped to the
        # sentinel slot.
        shifted = (values.astype(np.int64, copy=False) - self._lo).view(np.uint64)
        np.minimum(shifted, self._span, out=shifted)
        return self._lut[shifted]

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
            raise DataError(f"{path}: cannot read id map ({first_line(exc)})") from None
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
