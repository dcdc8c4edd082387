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
    """

    def __init__(self, fold: FoldIn, run: Callable[[np.ndarray, np.ndarray], np.ndarray], candidates,
                 user_classes: np.ndarray, user_type: pa.DataType):
        self.fold, self.run, self.candidates = fold, run, candidates
        self.user_classes, self.user_type = user_classes, user_type
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
            return graph_top(users)
        items = np.full((users.size, k), -1, dtype=np.int64)
        scores = np.full((users.size, k), -np.inf, dtype=np.float32)
        if not folded.all():
            items[~folded], scores[~folded] = graph_top(users[~folded])
        items[folded], scores[folded] = self._top(users[folded], k, seen)
        return items, scores
