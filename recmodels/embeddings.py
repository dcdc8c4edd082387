"""Pretrained item embeddings: read a table and align it to the item encoder (torch-free).

A pretrained table is a CSV/Parquet file with one id column and one numeric column per
dimension (the notebook's ``book_embedding_comics_graph.csv``: ``book_id, 0, 1, ...``).
:func:`read_item_embeddings` validates it; :func:`align_item_embeddings` turns it into a
``float32 [n_items, d]`` matrix whose row ``i`` is the vector of item index ``i``, the form
the hybrid model keeps as its ``item_pretrained`` buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import _first_line, _row, _show, arrow_ids, normalize_ids, read_table
from .encoders import IdEncoder
from .errors import ConfigError, DataError

__all__ = ["AlignedEmbeddings", "align_item_embeddings", "read_item_embeddings"]

FILL_MODES = ("zeros", "mean")


@dataclass
class AlignedEmbeddings:
    """A pretrained table aligned to the item index.

    Attributes
    ----------
    matrix : ndarray of float32, shape (n_items, d)
        Row ``i`` is the vector of item index ``i``.
    n_matched : int
        Items of the encoder that have a vector in the table.
    n_missing : int
        Items of the encoder without a vector (their rows hold the ``fill``).
    n_ignored : int
        Table rows whose id the encoder does not know (not used).
    fill : {"zeros", "mean"}
        What missing items got: zero vectors or the mean of the matched vectors.
    """

    matrix: np.ndarray
    n_matched: int
    n_missing: int
    n_ignored: int
    fill: str

    @property
    def dim(self) -> int:
        """Vector width ``d``."""
        return int(self.matrix.shape[1])

    def summary(self) -> str:
        """One line for logs."""
        n = self.n_matched + self.n_missing
        return (
            f"item embeddings: {self.n_matched}/{n} items matched, {self.n_missing} missing "
            f"(filled with {self.fill}), {self.n_ignored} table rows for unknown items ignored, "
            f"d={self.dim}"
        )

    def to_dict(self) -> dict:
        """JSON-able counts (without the matrix)."""
        return {
            "n_matched": self.n_matched,
            "n_missing": self.n_missing,
            "n_ignored": self.n_ignored,
            "fill": self.fill,
            "dim": self.dim,
        }


def read_item_embeddings(source, id_col: str = "item_id") -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a pretrained item-embedding table.

    Parameters
    ----------
    source : str, path-like or pandas.DataFrame
        CSV (``.csv``, ``.csv.gz``), Parquet file or Parquet directory, or a DataFrame.
    id_col : str
        The id column; every other column is one vector dimension and must be numeric.

    Returns
    -------
    ids : ndarray
        int64 when all ids are integral, else object (strings); unique.
    vectors : ndarray of float32, shape (n, d)
        Rows in table order.

    Raises
    ------
    DataError
        Missing or empty file, no data rows, missing id column (the message lists the
        columns), no vector columns, non-numeric/empty cells, NaN or infinite values, empty
        or duplicate ids. Rows are 1-based data rows (header not counted).
    """
    if isinstance(source, pd.DataFrame):
        where = "DataFrame"
        frame = source.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
    else:
        table, where = read_table(source, None, what="item embedding", text_columns=(id_col,))
        if id_col in table.column_names:
            index = table.schema.get_field_index(id_col)
            table = table.set_column(index, id_col, arrow_ids(table[id_col]))
        frame = table.to_pandas()
    available = list(frame.columns)
    if id_col not in available:
        shown = ", ".join(repr(c) for c in available[:10]) + (" ..." if len(available) > 10 else "")
        raise DataError(
            f"{where}: no id column {id_col!r} in the item embedding table; its columns are "
            f"{shown}; name the table's id column (id_col)"
        )
    vector_cols = [c for c in available if c != id_col]
    if not vector_cols:
        raise DataError(f"{where}: item embedding table has only the id column {id_col!r}, no vectors")
    if len(frame) == 0:
        raise DataError(f"{where}: item embedding table has a header but no rows")
    ids = normalize_ids(frame[id_col], where, id_col)
    dup = ids.duplicated(keep="first").to_numpy()
    if dup.any():
        second = int(np.argmax(dup))
        value = ids.iloc[second]
        first = int(np.argmax((ids == value).to_numpy()))
        raise DataError(
            f"{where}: duplicate item id {_show(value)} in column {id_col!r} at {_row(second)}, "
            f"first at row {first + 1} ({int(dup.sum())} duplicate(s)); keep one vector per item"
        )
    vectors = np.empty((len(frame), len(vector_cols)), dtype=np.float64)
    for j, col in enumerate(vector_cols):
        values = frame[col]
        if pd.api.types.is_bool_dtype(values.dtype):
            raise DataError(f"{where}: embedding column {col!r} is boolean, expected numbers")
        if pd.api.types.is_numeric_dtype(values.dtype):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
            raw_missing = values.isna().to_numpy()
        else:
            arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            raw_missing = values.isna().to_numpy()
            bad_text = np.isnan(arr) & ~raw_missing & ~_nan_text(values)
            if bad_text.any():
                row = int(np.argmax(bad_text))
                raise DataError(
                    f"{where}: non-numeric value {_show(values.iloc[row])} at {_row(row)} in "
                    f"embedding column {col!r}; vector cells must be numbers"
                )
        bad = ~np.isfinite(arr) | (np.abs(arr) > np.finfo(np.float32).max)
        if bad.any():
            row = int(np.argmax(bad))
            what = "empty or NaN" if raw_missing[row] else f"{arr[row]!r} (NaN/inf or beyond float32)"
            raise DataError(
                f"{where}: value at {_row(row)} in embedding column {col!r} is {what} "
                f"({int(bad.sum())} such cell(s) in that column); vectors must be finite numbers"
            )
        vectors[:, j] = arr
    out_ids = ids.to_numpy()
    if out_ids.dtype != np.int64:
        out_ids = out_ids.astype(object)
    return out_ids, vectors.astype(np.float32)


def _nan_text(values: pd.Series) -> np.ndarray:
    text = values.astype(str).str.strip().str.lower()
    return text.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()


def _ids_for_encoder(ids: np.ndarray, encoder: IdEncoder) -> np.ndarray:
    """Make table ids comparable with the encoder's kind (int ids vs integral text)."""
    ids = np.asarray(ids)
    if encoder.kind_ == "string" and ids.dtype.kind in "iu":
        return ids.astype(str).astype(object)
    if encoder.kind_ == "int64" and ids.dtype.kind in "USO":
        parsed = pd.to_numeric(pd.Series(ids, dtype=object), errors="coerce")
        ok = parsed.notna().all() and np.all(parsed.to_numpy() == np.round(parsed.to_numpy()))
        if not ok:
            raise DataError(
                "item ids in the embedding table are strings (e.g. "
                f"{_show(ids[0])}) but the ratings' item ids are integers; use the same ids in both"
            )
        return parsed.to_numpy().astype(np.int64)
    return ids


def align_item_embeddings(
    ids, vectors, item_encoder: IdEncoder, *, fill: str = "zeros", expected_dim: int | None = None
) -> AlignedEmbeddings:
    """Arrange table vectors by item index.

    Parameters
    ----------
    ids : array-like of shape (n,)
        Table ids (unique), e.g. from :func:`read_item_embeddings`.
    vectors : array-like of shape (n, d)
    item_encoder : IdEncoder
        The fitted item encoder of the model.
    fill : {"zeros", "mean"}
        Vector for encoder items that the table lacks.
    expected_dim : int, optional
        Required width ``d`` (e.g. the model's configured pretrained dimension).

    Returns
    -------
    AlignedEmbeddings

    Raises
    ------
    DataError
        Width differs from ``expected_dim``; lengths of ids and vectors differ; duplicate ids;
        no table id matches any encoder item (almost always the wrong id column or table).
    ConfigError
        Unknown ``fill``.
    """
    if fill not in FILL_MODES:
        raise ConfigError(f"embedding fill must be one of {', '.join(FILL_MODES)}, got {fill!r}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise DataError(f"item embedding vectors must be a 2-D table, got shape {vectors.shape}")
    ids = np.asarray(ids)
    if ids.shape[0] != vectors.shape[0]:
        raise DataError(f"{ids.shape[0]} item embedding ids but {vectors.shape[0]} vectors")
    dim = vectors.shape[1]
    if expected_dim is not None and dim != int(expected_dim):
        raise DataError(
            f"item embedding table has {dim} vector column(s) but the model expects {expected_dim}; "
            "use a table of that width or set the pretrained dimension to match"
        )
    try:
        index = item_encoder.transform(_ids_for_encoder(ids, item_encoder), unknown="mask")
    except DataError as exc:
        raise DataError(f"item embedding table: {_first_line(exc)}") from None
    known = index >= 0
    if np.unique(index[known]).size != int(known.sum()):
        raise DataError("item embedding table has duplicate item ids; keep one vector per item")
    n_items = len(item_encoder)
    n_matched = int(known.sum())
    if n_matched == 0 and n_items:
        raise DataError(
            f"none of the {ids.shape[0]} item embedding ids (e.g. {_show(ids[0])}) matches an item "
            f"of the ratings (e.g. {_show(item_encoder.classes_[0])}); check the table and its id "
            "column"
        )
    matrix = np.zeros((n_items, dim), dtype=np.float32)
    matrix[index[known]] = vectors[known]
    if fill == "mean" and n_matched < n_items:
        mean = vectors[known].astype(np.float64).mean(axis=0).astype(np.float32)
        has = np.zeros(n_items, dtype=bool)
        has[index[known]] = True
        matrix[~has] = mean
    return AlignedEmbeddings(
        matrix=matrix,
        n_matched=n_matched,
        n_missing=n_items - n_matched,
        n_ignored=int((~known).sum()),
        fill=fill,
    )
