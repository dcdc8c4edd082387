"""What each user already rated, as a sparse structure (torch-free): CSR over the user index.

``recmodels recommend --exclude-seen INTERACTIONS`` removes these pairs from every user's
candidates. The pairs are read in batches (:mod:`recmodels.tables`), mapped with the bundle's
encoders, and kept as one int64 key per known pair; :meth:`SeenItems.from_indices` sorts and
deduplicates the keys and turns them into ``indptr`` (int64, ``n_users + 1``) and ``items``
(int32, one per distinct pair): 4 bytes a pair plus 8 a user, never a users x items matrix
(3.08M pairs over 100,950 users: 13 MB). With ``--history`` or ``--item-embeddings``, the pairs of
items the bundle does not know but folded in are kept apart (:attr:`SeenItems.new_pairs`): the
graphs never rank them, :mod:`recmodels.scoring.history.rank` does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ...tables import missing_columns_error, open_table
from ..output.stream import numbered
from ..unknown_ids import (
    COUNT_KEYS,
    count_unknown,
    empty_counts,
    likely_cause,
    over_share,
    unknown_share_error,
)

READ_BATCH = 1 << 20


@dataclass
class SeenItems:
    """Item indices per user index: the items of user ``u`` are ``items[indptr[u]:indptr[u + 1]]``.

    Attributes
    ----------
    indptr : ndarray of int64, shape (n_users + 1,)
    items : ndarray of int32, shape (n_pairs,)
        Ascending within each user, no duplicates.
    rows : int
        Rows read from the source (known or not, duplicates included).
    counts : dict
        Unknown-id counts of the source (``unknown_users``, ``unknown_items``, ``unknown_rows``,
        ``null_ids``): such rows cannot be recommended anyway and are left out.
    source : str
        What was read, for reports.
    new_pairs : ndarray of int64
        ``user ext index * fold.items.rows + item ext index`` of the seen pairs whose item was
        folded in (:class:`~recmodels.scoring.history.FoldIn`: from ``--history`` ratings or
        ``--item-embeddings``), sorted, distinct; empty without a fold-in.

    Examples
    --------
    >>> seen = SeenItems.from_indices([0, 0, 2], [5, 1, 5], n_users=3)   # doctest: +SKIP
    >>> seen.items_of(0), seen.n_pairs                                 # doctest: +SKIP
    (array([1, 5], dtype=int32), 3)
    """

    indptr: np.ndarray
    items: np.ndarray
    rows: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    source: str = ""
    new_pairs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def from_indices(cls, user_index, item_index, n_users: int, n_items: int | None = None, **kwargs):
        """Build from index pairs (all valid): sort by ``(user, item)``, drop repeats, count per user."""
        users = np.asarray(user_index, dtype=np.int64)
        items = np.asarray(item_index, dtype=np.int64)
        width = int(n_items if n_items is not None else (items.max() + 1 if items.size else 1))
        keys = users * width + items
        keys.sort()  # (np.unique hashes first in numpy 2.x: ~15x slower on 3M keys)
        if keys.size:
            keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # distinct
        per_user = np.bincount(keys // width, minlength=n_users)
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(per_user, out=indptr[1:])
        return cls(indptr, (keys % width).astype(np.int32), **kwargs)

    @property
    def n_pairs(self) -> int:
        """Distinct known (user, item) pairs, those of folded-in items included."""
        return int(self.items.size + self.new_pairs.size)

    @property
    def nbytes(self) -> int:
        return int(self.indptr.nbytes + self.items.nbytes + self.new_pairs.nbytes)

    def items_of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def block(self, user_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, items)``: every seen pair of a block of users, ``rows`` the user's position in it."""
        starts = self.indptr[user_index]
        lengths = self.indptr[user_index + 1] - starts
        total = int(lengths.sum())
        rows = np.repeat(np.arange(user_index.size), lengths)
        if total == 0:
            return rows, np.zeros(0, dtype=np.int64)
        ends = np.cumsum(lengths)
        flat = np.arange(total) + np.repeat(starts - (ends - lengths), lengths)
        return rows, self.items[flat].astype(np.int64)


def _source_table(source, columns: list[str], what: str, dialect=None):
    """``(where, total_rows, batches)`` of a path (streamed) or an in-memory frame/table."""
    if isinstance(source, str | os.PathLike):
        table = open_table(source, text_columns=tuple(columns), what=what, dialect=dialect)
        names = table.schema.names
        if any(c not in names for c in columns):
            raise table.missing_columns_error(columns, "pass --user-col / --item-col")
        return table.path, table.schema, table.batches(columns, READ_BATCH)
    from ..output.stream import as_batches

    batches = as_batches(source)
    names = batches[0].schema.names if batches else list(getattr(source, "columns", []))
    if any(c not in names for c in columns):
        raise missing_columns_error(
            "exclude_seen", columns, [str(n) for n in names], what, "pass user_col / item_col"
        )
    schema = batches[0].schema if batches else pa.schema([])
    return "exclude_seen", schema, numbered(b.select(columns) for b in batches)


def read_seen(source, bundle, user_col: str, item_col: str, *, max_unknown_share: float = 1.0,
              dialect=None, fold=None) -> SeenItems:
    """The pairs of ``source`` (CSV/Parquet path, DataFrame or Arrow table) as :class:`SeenItems`.

    Parameters
    ----------
    source : path-like, str, pandas.DataFrame or pyarrow.Table
        (user, item) pairs, e.g. the training interactions; other columns are ignored.
    bundle : Bundle
        Whose encoders map the ids (read by :mod:`recmodels.ids`' rules, as ``score`` does).
    user_col, item_col : str
        The id columns.
    max_unknown_share : float
        When more than this share of the rows has an id the bundle does not know (columns of
        another id space or type), fail with one line; 1 turns the check off.
    dialect : recmodels.tables.CsvDialect, optional
        How a delimited text file is read (separator, header row or column names).
    fold : recmodels.scoring.history.FoldIn, optional
        ``--history`` / ``--item-embeddings``: its new users and items are known (the structure
        covers its user indices; pairs of its new items go to :attr:`SeenItems.new_pairs`) and its
        history's pairs (:attr:`~recmodels.scoring.history.FoldIn.seen` and ``seen_new``) are seen too.

    Raises
    ------
    DataError
        Missing columns, unreadable file, or too many unknown ids.
    """
    what = "exclude-seen"
    where, schema, batches = _source_table(source, [user_col, item_col], what, dialect)
    counts = empty_counts()
    keys, new_keys, rows, samples = [], [], 0, {}
    n_items = len(bundle.item_encoder)
    for _, batch in batches:
        user_index, user_nulls = bundle.user_encoder.lookup(batch.column(user_col))
        item_index, item_nulls = bundle.item_encoder.lookup(batch.column(item_col))
        if fold is not None:
            fold.users.extend(batch.column(user_col), user_index)
            fold.items.extend(batch.column(item_col), item_index)
        known = count_unknown(counts, user_index, item_index, user_nulls, item_nulls)
        if not rows:
            samples = {c: batch.column(c) for c in (user_col, item_col)}
        rows += batch.num_rows
        new = known & (item_index >= n_items)
        if new.any():
            new_keys.append(user_index[new] * fold.items.rows + item_index[new])
            known &= ~new
        keys.append(user_index[known] * n_items + item_index[known])
    if over_share(counts["unknown_rows"], rows, max_unknown_share):
        types = {c: schema.field(c).type for c in (user_col, item_col) if c in schema.names}
        cause = likely_cause(bundle, user_col, item_col, types, samples)
        raise unknown_share_error(where, counts, rows, max_unknown_share, cause)
    if fold is not None:
        keys.append(fold.seen[0] * n_items + fold.seen[1])
        new_keys.append(fold.seen_new[0] * fold.items.rows + fold.seen_new[1])
    key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    new_pairs = np.unique(np.concatenate(new_keys)) if new_keys else np.zeros(0, dtype=np.int64)
    return SeenItems.from_indices(
        key // n_items,
        key % n_items,
        len(bundle.user_encoder) if fold is None else fold.users.rows,
        n_items,
        rows=rows,
        counts=counts,
        source=str(where),
        new_pairs=new_pairs.astype(np.int64),
    )
