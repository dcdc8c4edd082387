"""The data settings' choices and defaults, light: ``recmodels train --help`` reads them without
loading pandas or pyarrow.

:class:`DataFields` holds the fields of :class:`recmodels.training.setup.DataConfig` and their
defaults (``DataConfig`` adds the checks and what needs the table readers); :mod:`.read`,
:mod:`.split` and :mod:`recmodels.embeddings` check their arguments against the choices here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .columns import Columns

if TYPE_CHECKING:
    from ..tables import CsvDialect

__all__ = ["DUPLICATE_POLICIES", "FILL_MODES", "SPLIT_METHODS", "DataFields"]

DUPLICATE_POLICIES = ("last", "first", "error")
"""Repeated (user, item) pairs: keep the last, keep the first, or fail."""
SPLIT_METHODS = ("random", "leave-last-out")
"""How one interaction table is split into train/valid/test."""
FILL_MODES = ("zeros", "mean")
"""The vector of an item the pretrained item table lacks."""

_COLUMNS = Columns()


@dataclass(frozen=True)
class DataFields:
    """The fields of :class:`recmodels.training.setup.DataConfig` and their defaults, unchecked.

    Use ``DataConfig``, which documents and checks them; this base only lets the CLI read the
    defaults without importing the table readers.
    """

    user_col: str = _COLUMNS.user
    item_col: str = _COLUMNS.item
    rating_col: str = _COLUMNS.rating
    timestamp_col: str | None = _COLUMNS.timestamp
    rating_range: tuple[float, float] | None = None
    duplicates: str = "last"
    split: str = "random"
    fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    embedding_fill: str = "zeros"
    missing_rating: float | None = None
    csv: CsvDialect | None = None
