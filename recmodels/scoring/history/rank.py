"""Top-K for folded-in users: ``recmodels recommend --history`` (numpy only).

The recommend graphs hold the bundle's user rows, so a user whose row the history changed (a new
user folded in, a known user updated) is ranked here instead, exactly::

    score(u, i) = base(u, i) + [Q_i, 1] . d_u        for every candidate item i

``base`` is ``model.onnx``'s score of the user's graph row (the prior row for a new user: the same
for every new user, computed once per job; the trained row for a known user), ``Q_i`` the item's
effective GMF row and ``d_u`` the user's change (:class:`~.fold.FoldIn`). For MF, the base of a
known user is a dot product too, but ``model.onnx`` gives it for every kind in one call. Users
are ranked in blocks whose ``[users, candidates]`` scores stay within :data:`BLOCK_ELEMENTS`.
Ties go to the lower item index, as in the graphs.

New items (folded in from ratings, or a hybrid bundle's items from their vectors) are in no graph:
every user's score of one is ``model.onnx``'s score of the user's graph row with the prior item, plus
the item's change (and the user's, :meth:`~.fold.FoldIn.adjust`); they join each user's top-K from
the graphs (or from above) after the bundle's items, so a tie goes to the bundle's item.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from .fold import FoldIn
from .solve import design

BLOCK_ELEMENTS = 1 << 21
"""Scores of one block of folded-in users (users x candidates, 8 MB as float32)."""


def top_positions(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``min(k, columns)`` best ``(columns, scores)``: score descending, ties to the lower column.

    ``scores`` float32 ``[rows, columns]``, ``-inf`` for an excluded column (it comes last and is
    reported with its ``-inf``). A partial sort finds each row's ``k``-th best value; the columns
    above it and, of those equal to it, the leftmost are kept and sorted.
    """
    n, m = scores.shape
    kk = min(int(k), m)
    neg = -scores
    if kk < m:
        part = np.argpartition(neg, kk - 1, axis=1)[:, :kk]
        threshold = np.take_along_axis(neg, part, axis=1).max(axis=1, keepdims=True)
        better = neg < threshold
        tie = neg == threshold
        room = kk - better.sum(axis=1, keepdims=True)
        take = better | (tie & (np.cumsum(tie, axis=1) <= room))
        cols = np.nonzero(take)[1].reshape(n, kk)
    else:
        cols = np.broadcast_to(np.arange(m), (n, m))
    values = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -values.astype(np.float64)), axis=-1)
    return np.take_along_axis(cols, order, axis=1), np.take_along_axis(values, order, axis=1)


class FoldedRanking:
    """The top-K of folded-in users over a job's candidate items (see the module docstring).

    Parameters
    ----------
    fold : FoldIn
    run : callable
        ``(user_index, item_index) -> float32 scores``: ``model.onnx`` on graph rows.
    candidates : Candidates
        The job's candidate items (``items`` ascending, ``positions(item_index)``).
    user_classes : ndarray
        The bundle's user ids (row position = index).
    user_type : pyarrow.DataType
        The type user ids are written as.
    item_classes : ndarray, optional
        The bundle's item ids, to write new items' ids (:meth:`item_ids`).
    item_type : pyarrow.DataType, optional
        The type item ids are written as.
    new_items : ndarray of int64, optional
        The ``ext`` indices of the new items that are candidates (default: every new item).
    """

    def __init__(self, fold: FoldIn, run: Callable[[np.ndarray, np.ndarray], np.ndarray], candidates,
                 user_classes: np.ndarray, user_type: pa.DataType, *, item_classes: np.ndarray | None = None,
                 item_type: pa.DataType | None = None, new_items: np.ndarray | None = None):
        self.fold, self.run, self.candidates = fold, run, candidates
        self.user_classes, self.user_type = user_classes, user_type
        self.item_classes, self.item_type = item_classes, item_type
        self.new_items = fold.items.new_rows() if new_items is None else np.asarray(new_items, dtype=np.int64)
        self.items = np.asarray(candidates.items, dtype=np.int64)
        self.features = design(fold.items.vectors[self.items]).T.copy()  # [rank + 1, candidates]
        users = fold.users
        self.prior_base = None
        if users.new_ids is not None:  # every new user's base: the prior row's scores
            self.prior_base = np.asarray(run(np.full(self.items.size, users.n, dtype=np.int64), self.items),
                                         dtype=np.float32)

    def user_ids(self, ext: np.ndarray) -> pa.Array:
        """Ids of ``ext`` user indices (bundle users and folded-in new users)."""
        return pa.array(self.fold.users.id_values(self.user_classes, ext), type=self.user_type)

    def item_ids(self, ext: np.ndarray) -> pa.Array:
        """Ids of ``ext`` item indices (bundle items and new items)."""
        return pa.array(self.fold.items.id_values(self.item_classes, ext), type=self.item_type)

    def scores(self, users: np.ndarray) -> np.ndarray:
        """float32 ``[users, candidates]`` scores of folded-in users (``ext`` indices with a change)."""
        side = self.fold.users
        delta = side.delta[side.slot[users]]
        out = (delta @ self.features).astype(np.float32)
        new = users > side.n
        if new.any():
            out[new] += self.prior_base
        known = np.flatnonzero(~new)
        if known.size:
            m = self.items.size
            base = self.run(np.repeat(users[known], m), np.tile(self.items, known.size))
            out[known] += np.asarray(base, dtype=np.float32).reshape(known.size, m)
        return out

    def _top(self, users: np.ndarray, k: int, seen) -> tuple[np.ndarray, np.ndarray]:
        n, m = users.size, self.items.size
        items = np.full((n, k), -1, dtype=np.int64)
        top = np.full((n, k), -np.inf, dtype=np.float32)
        step = max(1, BLOCK_ELEMENTS // max(1, m))
        for lo in range(0, n, step):
            block = users[lo : lo + step]
            scores = self.scores(block)
            if seen is not None:
                rows, seen_items = seen.block(block)
                cols = self.candidates.positions(seen_items)
                keep = cols >= 0
                scores[rows[keep], cols[keep]] = -np.inf
            cols, values = top_positions(scores, k)
            width = cols.shape[1]
            found = np.isfinite(values)
            items[lo : lo + block.size, :width] = np.where(found, self.items[cols], -1)
            top[lo : lo + block.size, :width] = np.where(found, values, -np.inf)
        return items, top

    def top_k(self, users: np.ndarray, k: int, seen,
              graph_top: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]):
        """``(items, scores)``, each ``[len(users), k]``, as the graphs' top-K returns them.

        Users with a change are ranked here; the others by ``graph_top`` (the recommend graph).
        ``seen``: a :class:`~recmodels.scoring.recommendation.seen.SeenItems` over ``ext`` user
        indices, or None.
        """
        folded = self.fold.users.folded(users)
        if not folded.any():
            items, scores = graph_top(users)
        else:
            items = np.full((users.size, k), -1, dtype=np.int64)
            scores = np.full((users.size, k), -np.inf, dtype=np.float32)
            if not folded.all():
                items[~folded], scores[~folded] = graph_top(users[~folded])
            items[folded], scores[folded] = self._top(users[folded], k, seen)
        if self.new_items.size:
            items, scores = self._with_new_items(users, items, scores, k, seen)
        return items, scores

    def new_item_scores(self, users: np.ndarray, seen=None) -> np.ndarray:
        """float32 ``[users, new items]`` scores (``-inf`` for a pair of ``seen.new_pairs``: the
        history's and the ``--exclude-seen`` table's pairs of new items)."""
        fold, m = self.fold, self.new_items.size
        base = self.run(fold.users.graph_index(users), np.full(users.size, fold.items.n, dtype=np.int64))
        ext_user, ext_item = np.repeat(users, m), np.tile(self.new_items, users.size)
        scores = np.repeat(np.asarray(base, dtype=np.float32), m)
        fold.adjust(ext_user, ext_item, scores)
        if seen is not None and seen.new_pairs.size:
            scores[np.isin(ext_user * fold.items.rows + ext_item, seen.new_pairs)] = -np.inf
        return scores.reshape(users.size, m)

    def _with_new_items(self, users, items, scores, k: int, seen):
        """Each user's top-``k`` of its bundle top-``k`` and the new items (ties: the column first)."""
        step = max(1, BLOCK_ELEMENTS // self.new_items.size)
        out_items = np.full((users.size, k), -1, dtype=np.int64)
        out_scores = np.full((users.size, k), -np.inf, dtype=np.float32)
        for lo in range(0, users.size, step):
            block = slice(lo, lo + step)
            new = self.new_item_scores(users[block], seen)
            both = np.concatenate([np.where(items[block] >= 0, scores[block], -np.inf), new], axis=1)
            columns = np.concatenate([items[block], np.broadcast_to(self.new_items, new.shape)], axis=1)
            cols, values = top_positions(both.astype(np.float32), k)
            found = np.isfinite(values)
            width = cols.shape[1]
            out_items[block, :width] = np.where(found, np.take_along_axis(columns, cols, axis=1), -1)
            out_scores[block, :width] = np.where(found, values, -np.inf)
        return out_items, out_scores
