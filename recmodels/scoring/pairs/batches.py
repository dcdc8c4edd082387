"""The batch path of :class:`~recmodels.scoring.pairs.scorer.Scorer`: ids to graph indices under the
unknown-id policy (step 1), the graph's scores (step 2), pipelined over Arrow batches (torch-free).

Every input kind (arrays, frames, Arrow streams, files) goes through these two steps, then
:meth:`Scorer.assemble <recmodels.scoring.pairs.scorer.Scorer.assemble>` (step 3): one id mapping
(``IdEncoder.lookup``), one inference routine, one error text, and unknown-id counts for every input
kind. :class:`BatchPath` holds the steps; the :class:`Scorer` built on it sets the state they read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ...encoders import unknown_id_error
from ...ids import id_at
from ..history.rows import graph_rows
from ..runtime.pipeline import pipelined
from ..unknown_ids import count_unknown

_ERROR_HINT = "it is not in the bundle's id map (use --unknown fallback or skip to score anyway)"


@dataclass
class MappedBatch:
    """One input batch after id mapping (step 1) and, once inferred, its scores (step 2)."""

    start: int
    batch: pa.RecordBatch
    user_index: np.ndarray
    item_index: np.ndarray
    known: np.ndarray | None  # None: every row known
    order: np.ndarray | None = None  # ScoringSession.order of the indices
    scores: np.ndarray | None = None
    ext: tuple | None = None  # (user, item) indices for FoldIn.adjust; None without a history
    unscored: np.ndarray | None = None  # rows given the fallback score (None: ~known)


class BatchPath:
    """Steps 1 and 2 of scoring pairs, on the state a :class:`~recmodels.scoring.pairs.scorer.Scorer`
    sets: ``user_col``, ``item_col``, ``user_encoder``, ``item_encoder``, ``unknown``, ``fold``,
    ``prior_rows``, ``fallback_score``, ``clip``, ``rating_range``, ``counts`` and ``_session``."""

    def mapped(self, batches: Iterable[tuple[int, pa.RecordBatch]]) -> Iterator[MappedBatch]:
        """Steps 1 and 2 over ``(first_row, batch)`` pairs, pipelined in threads, in order."""
        return pipelined(batches, [lambda item: self._map(*item), self._infer])

    def _map(self, start: int, batch: pa.RecordBatch) -> MappedBatch:
        """Ids -> indices; count and apply the unknown-id policy (step 1)."""
        users = batch.column(self.user_col)
        items = batch.column(self.item_col)
        user_index, user_nulls = self.user_encoder.lookup(users)
        item_index, item_nulls = self.item_encoder.lookup(items)
        if self.fold is not None:  # folded-in new ids are known from here on
            self.fold.extend(users, items, user_index, item_index)
        bad_user = user_index < 0
        bad_item = item_index < 0
        unknown = bad_user | bad_item
        n_unknown = int(np.count_nonzero(unknown))
        if n_unknown == 0 and self.fold is None:
            order = self._session.order(user_index, item_index)
            return MappedBatch(start, batch, user_index, item_index, None, order)
        c = self.counts
        count_unknown(c, user_index, item_index, user_nulls, item_nulls)
        if self.unknown == "error":
            row = int(np.argmax(unknown))
            role, column, enc = (
                ("user", users, self.user_encoder) if bad_user[row] else ("item", items, self.item_encoder)
            )
            value = id_at(column, row, enc.kind_)
            raise unknown_id_error(role, value, start + row, None, hint=_ERROR_HINT)
        if self.unknown == "skip":
            c["skipped"] += n_unknown
        # Unknown pairs get index 0 (always valid) and their scores are overwritten in _infer:
        # the graph never sees an out-of-range index, and the batch keeps its shape.
        # With prior rows (the fallback policy) a pair with one unknown side is scored with that
        # side's prior row; the others get the fallback in _infer.
        user_index, item_index, ext, unscored = graph_rows(
            user_index, item_index, self.prior_rows, self.fold, use_prior=self.unknown == "fallback")
        order = self._session.order(user_index, item_index)
        known = ~unknown if n_unknown else None
        return MappedBatch(start, batch, user_index, item_index, known, order, ext=ext,
                           unscored=unscored if n_unknown else None)

    def _infer(self, m: MappedBatch) -> MappedBatch:
        """Run the graph; unknown pairs (index 0 here) get the fallback score (step 2)."""
        scores = self._session.run(m.user_index, m.item_index, m.order)
        m.user_index = m.item_index = m.order = None  # not needed downstream: free them early
        if m.ext is not None:
            self.fold.adjust(m.ext[0], m.ext[1], scores)
            m.ext = None
        if m.known is not None:
            scores[~m.known if m.unscored is None else m.unscored] = self.fallback_score
        if self.clip:
            np.clip(scores, self.rating_range[0], self.rating_range[1], out=scores)
        m.scores = scores
        return m
