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

from .data.settings import FILL_MODES
from .encoders import IdEncoder
from .errors import ConfigError, DataError, first_line, row_label
from .ids import fit_kind, show_id
from .tables import read_table

__all__ = ["AlignedEmbeddings", "align_item_embeddings", "read_item_embeddings"]

_KIND_WORDS = {"int64": "integers", "string": "strings"}


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
        return {name: getattr(self, name) for name in ("n_matched", "n_missing", "n_ignored", "fill", "dim")}


def read_item_embeddings(source, id_col: str = "item_id") -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a pretrained item-embedding table.

    Parameters
    ----------
    source : str, path-like or pandas.DataFrame
        Anything :func:`recmodels.tables.read_table` reads (CSV/TSV, plain or compressed,
        Parquet, a directory or glob of them), or a DataFrame.
    id_col : str
        The id column; every other column is one vector dimension and must be numeric.

    Returns
    -------
    ids : ndarray
        int64 or object (str), as the id rules of :mod:`recmodels.ids` decide for the column
        (CSV ids are read as text: ``"0204"`` stays a string, ``204.0`` is 204); unique.
    vectors : ndarray of float32, shape (n, d)
        Rows in table order.

    Raises
    ------
    DataError
        Missing or empty file, no data rows, missing id column (the message lists the
        columns), no vector columns, non-numeric/empty cells, NaN or infinite values, empty
        or duplicate ids. Rows are named ``data row N`` (1-based, header not counted).
    """
    if isinstance(source, pd.DataFrame):
        where = "DataFrame"
        frame = source.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        raw_ids = frame[id_col] if id_col in frame.columns else None
    else:
        table, where = read_table(source, None, what="item embedding", text_columns=(id_col,))
        raw_ids = table.column(id_col) if id_col in table.column_names else None
        frame = table.drop_columns([id_col]) if raw_ids is not None else table
        frame = frame.to_pandas()
    if raw_ids is None:
        available = list(frame.columns)
        shown = ", ".join(repr(c) for c in available[:10]) + (" ..." if len(available) > 10 else "")
        raise DataError(
            f"{where}: no id column {id_col!r} in the item embedding table; its columns are "
            f"{shown}; name the table's id column (id_col)"
        )
    vector_cols = [c for c in frame.columns if c != id_col]
    if not vector_cols:
        raise DataError(f"{where}: item embedding table has only the id column {id_col!r}, no vectors")
    if len(frame) == 0:
        raise DataError(f"{where}: item embedding table has a header but no rows")
    try:
        _, ids, nulls = fit_kind(raw_ids)
    except TypeError as exc:
        raise DataError(f"{where}: id column {id_col!r}: {exc}; ids must be integers or text") from None
    if nulls is not None:
        first = int(np.argmax(nulls))
        raise DataError(
            f"{where}: {int(nulls.sum())} empty id(s) in column {id_col!r}, first at {row_label(first)}; "
            "drop or fill those rows"
        )
    dup = pd.Series(ids).duplicated(keep="first").to_numpy()
    if dup.any():
        second = int(np.argmax(dup))
        first = int(np.argmax(ids == ids[second]))
        raise DataError(
            f"{where}: duplicate item id {show_id(ids[second])} in column {id_col!r} at "
            f"{row_label(second)}, first at {row_label(first)} ({int(dup.sum())} duplicate(s)); "
            "keep one vector per item"
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
                    f"{where}: non-numeric value {show_id(values.iloc[row])} at {row_label(row)} in "
                    f"embedding column {col!r}; vector cells must be numbers"
                )
        bad = ~np.isfinite(arr) | (np.abs(arr) > np.finfo(np.float32).max)
        if bad.any():
            row = int(np.argmax(bad))
            what = "empty or NaN" if raw_missing[row] else f"{arr[row]!r} (NaN/inf or beyond float32)"
            raise DataError(
                f"{where}: value at {row_label(row)} in embedding column {col!r} is {what} "
                f"({int(bad.sum())} such cell(s) in that column); vectors must be finite numbers"
            )
        vectors[:, j] = arr
    return ids, vectors.astype(np.float32)


def _nan_text(values: pd.Series) -> np.ndarray:
    text = values.astype(str).str.strip().str.lower()
    return text.isin(["nan", "inf", "-inf", "+inf", "infinity", "-infinity"]).to_numpy()


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
        index = item_encoder.transform(ids, unknown="mask")
    except DataError as exc:
        raise DataError(f"item embedding table: {first_line(exc)}") from None
    known = index >= 0
    if np.unique(index[known]).size != int(known.sum()):
        raise DataError("item embedding table has duplicate item ids; keep one vector per item")
    n_items = len(item_encoder)
    n_matched = int(known.sum())
    if n_matched == 0 and n_items:
        table_kind = fit_kind(ids)[0]
        kinds = "" if table_kind == item_encoder.kind_ else (
            f"; the table's ids are {_KIND_WORDS[table_kind]} but the ratings' item ids are "
            f"{_KIND_WORDS[item_encoder.kind_]}"
        )
        raise DataError(
            f"none of the {ids.shape[0]} item embedding ids (e.g. {show_id(ids[0])}) matches an item "
            f"of the ratings (e.g. {show_id(item_encoder.classes_[0])}){kinds}; check the table and its "
            "id column"
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
