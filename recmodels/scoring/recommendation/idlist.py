"""One-column id lists for ``recmodels recommend``: ``--users FILE`` and ``--items FILE`` (torch-free).

A list is a CSV/Parquet file (read by :mod:`recmodels.tables`) or ids in memory (a list, array,
Series, Arrow array). Ids are mapped by the bundle's encoder (:mod:`recmodels.ids`' rules, as
``score`` reads them); unknown and null ids are counted and left out, under the same
``--max-unknown-share`` guard as ``score``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...errors import DataError, row_label
from ...ids import as_arrow, id_at, show_id
from ...tables import open_table, read_table
from ..unknown_ids import likely_cause, over_share, unknown_share_error


@dataclass
class IdList:
    """A mapped id list.

    Attributes
    ----------
    index : ndarray of int64
        The encoder index of every entry, in list order; -1 for unknown or null ids.
    where : str
        The list's name in messages (its path, or ``users`` / ``items``).
    column : str or None
        The column read (files only).
    type : pyarrow.DataType
        The ids' type as read (for the unknown-id hint).
    ids : pyarrow.Array
        The ids as read.
    nulls : int
        Null entries (counted as unknown too).
    """

    index: np.ndarray
    where: str
    column: str | None
    type: pa.DataType
    ids: pa.Array
    nulls: int = 0

    @property
    def rows(self) -> int:
        return int(self.index.size)

    @property
    def unknown(self) -> int:
        """Entries whose id is not in the bundle (nulls included)."""
        return int(np.count_nonzero(self.index < 0))

    @property
    def known(self) -> np.ndarray:
        return self.index[self.index >= 0]


def _pick_column(path, names: list[str], column: str | None, default: str, role: str) -> str:
    if column is not None:
        if column not in names:
            raise DataError(f"{path}: no {role} id column {column!r} (columns: {', '.join(map(str, names))})")
        return column
    if default in names:
        return default
    if len(names) == 1:
        return names[0]
    raise DataError(
        f"{path}: cannot tell which column holds the {role} ids (columns: {', '.join(map(str, names))}); "
        f"pass --{role}s-col"
    )


def read_id_list(source, encoder, role: str, *, column: str | None, default: str, dialect=None) -> IdList:
    """Map a one-column list (path, or ids in memory) with ``encoder``.

    ``column`` names the id column of a file; without it the bundle's column name ``default``
    is used when the file has it, else the file's only column. ``dialect``: how a delimited text
    file is read (:class:`recmodels.tables.CsvDialect`).

    Raises
    ------
    DataError
        Missing file or column, or an empty list.
    """
    if isinstance(source, str | os.PathLike):
        opened = open_table(source, what=f"{role} list", dialect=dialect)
        if opened.header_looks_like_data:  # its first id would be taken for the column's name
            raise opened.missing_columns_error([column or default], f"pass --{role}-col")
        names = opened.schema.names
        column = _pick_column(source, names, column, default, role)
        table, where = read_table(source, [column], what=f"{role} list", text_columns=(column,),
                                  dialect=dialect)
        ids = table.column(column).combine_chunks()
    else:
        where, ids = f"{role}s", as_arrow(source)
    if len(ids) == 0:
        raise DataError(f"{where}: the {role} list is empty; give at least one {role} id")
    index, nulls = encoder.lookup(ids)
    return IdList(
        index=index,
        where=str(where),
        column=column,
        type=ids.type,
        ids=ids,
        nulls=0 if nulls is None else int(nulls.sum()),
    )


def check_duplicates(ids: IdList, role: str) -> None:
    """One line naming the first id listed twice (known ids; ``204`` and ``"204"`` are one id)."""
    known = np.flatnonzero(ids.index >= 0)
    values = ids.index[known]
    order = np.argsort(values, kind="stable")
    repeat = np.flatnonzero(values[order][1:] == values[order][:-1])
    if repeat.size:
        rows = known[order][[repeat[0], repeat[0] + 1]]
        first, second = sorted(int(r) for r in rows)
        value = show_id(id_at(ids.ids, second))
        raise DataError(
            f"{ids.where}: {role} id {value} is listed more than once ({row_label(first)} and "
            f"{row_label(second)}); list each {role} once"
        )


def check_unknown_share(ids: IdList, bundle, role: str, limit: float, user_col: str, item_col: str) -> None:
    """The ``--max-unknown-share`` guard over a list's unknown ids (nothing has been written yet)."""
    if over_share(ids.unknown, ids.rows, limit):
        counts = {
            "unknown_rows": ids.unknown,
            "unknown_users": ids.unknown if role == "user" else 0,
            "unknown_items": ids.unknown if role == "item" else 0,
            "null_ids": ids.nulls,
        }
        col = ids.column or (user_col if role == "user" else item_col)
        cols = (col, item_col) if role == "user" else (user_col, col)
        cause = likely_cause(bundle, *cols, {col: ids.type}, {col: ids.ids})
        raise unknown_share_error(ids.where, counts, ids.rows, limit, cause)
