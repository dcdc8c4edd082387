"""Encode interactions as contiguous indices with fitted id encoders; save and load them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..encoders import IdEncoder
from ..errors import DataError, first_line
from ..fileio import atomic_path
from .columns import Columns

ENCODED_COLUMNS = ("user_index", "item_index", "rating")


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

    def __post_init__(self):
        self.user_index = np.ascontiguousarray(self.user_index, dtype=np.int64)
        self.item_index = np.ascontiguousarray(self.item_index, dtype=np.int64)
        self.rating = np.ascontiguousarray(self.rating, dtype=np.float32)
        n = self.user_index.shape[0]
        if self.item_index.shape != (n,) or self.rating.shape != (n,) or self.user_index.ndim != 1:
            raise ValueError("user_index, item_index and rating must be 1-D arrays of one length")

    def __len__(self) -> int:
        return int(self.user_index.shape[0])


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
        raise DataError(f"{path}: cannot read encoded ratings ({first_line(exc)})") from None
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


