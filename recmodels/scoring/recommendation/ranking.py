"""The ranking path of :class:`~recmodels.scoring.recommendation.recommender.Recommender`: chunks of
users through the recommend graphs, in threads, into rows ``user_id, rank, item_id, score`` (torch-
and scikit-learn-free).

:class:`RankingPath` opens the sessions (:class:`~recmodels.scoring.recommendation.topk.TopKSession`
for ``recommend.onnx``, ``rank_all.onnx`` and ``retrieve.onnx``; a
:class:`~recmodels.scoring.runtime.session.ScoringSession` on ``model.onnx`` to re-rank two-stage
candidates) and ranks a prepared :class:`~recmodels.scoring.recommendation.job.RecommendJob`; the
:class:`Recommender` built on it reads the inputs and writes the rows.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from ..runtime.providers import available_cpus
from ..runtime.session import ScoringSession
from .job import RecommendJob
from .topk import TopKSession, select_top

CHUNK_USERS = {False: 512, True: 64}
"""Users a worker thread takes at a time (dot-product graph / MLP graph)."""


def _arrow_ids(encoder, index: np.ndarray) -> pa.Array:
    typ = pa.int64() if encoder.kind_ == "int64" else pa.string()
    return pa.array(encoder.classes_[index], type=typ)


def recommend_schema(bundle) -> pa.Schema:
    """The rows of ``recommend``: user id, ``rank``, item id, ``score``; the ids in ``bundle``'s id
    types, under its id column names (``user_id``, ``item_id`` unless trained on others): the
    names and types ``score`` writes for an input in the bundle's column names.

    Depends only on the id maps' kinds: no session is needed (the engines' driver announces it).
    """
    kind = {"int64": pa.int64(), "string": pa.string()}
    return pa.schema(
        [
            (bundle.user_column, kind[bundle.user_encoder.kind_]),
            ("rank", pa.int32()),
            (bundle.item_column, kind[bundle.item_encoder.kind_]),
            ("score", pa.float32()),
        ]
    )


class RankingPath:
    """Ranks the users of a :class:`RecommendJob`, on the state a :class:`Recommender` sets:
    ``bundle``, ``candidates`` (two-stage: items retrieved per user, or None), ``warnings``; the rest
    :meth:`_open_sessions` sets."""

    def _open_sessions(self, device: str, section, threads: int | None, block_users: int | None,
                       tile_items: int | None, pair_scores: bool) -> None:
        """The graphs' sessions for ``section`` (the manifest's ``graph_recommend``): ``_exact``
        (``recommend.onnx``), ``_whole`` (``rank_all.onnx``, when it can rank every candidate),
        ``_retrieve`` (two-stage), ``_pairs`` (``model.onnx``: re-ranking, and ``pair_scores`` for
        the fold-in); then the worker threads and users per chunk."""
        has_mlp = section.retrieve is not None
        self._exact = TopKSession(
            self.bundle.recommend_model_path,
            device,
            item_multiple=section.item_multiple,
            has_mlp=has_mlp,
            block_users=block_users,
            tile_items=tile_items,
            notes=self.warnings,
        )
        self.provider = self._exact.provider
        self._whole = None
        if self.bundle.rank_all_model_path is not None and (not has_mlp or self.candidates is not None):
            self._whole = TopKSession(  # the dot-product part over every item (MF: the model)
                self.bundle.rank_all_model_path,
                self.provider,
                item_multiple=section.item_multiple,
                has_mlp=False,
                block_users=block_users,
            )
        self._retrieve = self._pairs = None
        if self.candidates is not None:
            self._retrieve = TopKSession(
                self.bundle.retrieve_model_path,
                self.provider,
                item_multiple=section.item_multiple,
                has_mlp=False,
                block_users=block_users,
                tile_items=tile_items,
            )
        if self.candidates is not None or pair_scores:
            self._pairs = ScoringSession(self.bundle, self.provider, threads=1)
        on_cpu = self.provider == "cpu"
        self.threads = int(threads or available_cpus()) if on_cpu else 1
        self.chunk_users = CHUNK_USERS[has_mlp and self.candidates is None]
        self.has_mlp = has_mlp

    def _first_stage(self, job: RecommendJob) -> TopKSession:
        """The session that ranks every candidate: the whole-catalogue graph when it can."""
        if self._whole is not None and job.candidates.position is None:
            return self._whole
        return self._exact if self.candidates is None else self._retrieve

    def _top(self, users: np.ndarray, job: RecommendJob):
        first = self._first_stage(job)
        if self.candidates is None:
            return first.top_k(users, job.candidates, job.k, job.seen)
        n = min(self.candidates, job.candidates.size)
        found, _ = first.top_k(users, job.candidates, n, job.seen)
        valid = found >= 0
        scores = np.full(found.shape, -np.inf, dtype=np.float32)
        scores[valid] = self._pairs.run(np.repeat(users, n)[valid.ravel()], found[valid])
        return select_top(scores, found, job.k)

    def _chunk(self, job: RecommendJob, lo: int, hi: int) -> tuple[pa.RecordBatch, int, int, int]:
        """The output rows of list positions ``[lo, hi)``; known users, users with rows, users short
        of ``k``."""
        index = job.user_index[lo:hi]
        users = index[index >= 0]
        if job.folded is None:
            items, scores = self._top(users, job)
        else:
            items, scores = job.folded.top_k(users, job.k, job.seen, lambda known: self._top(known, job))
        found = items >= 0
        per_user = found.sum(axis=1)
        rows = np.repeat(np.arange(users.size), per_user)
        b = self.bundle
        folded = job.folded
        user_ids = _arrow_ids(b.user_encoder, users[rows]) if folded is None else folded.user_ids(users[rows])
        batch = pa.RecordBatch.from_arrays(
            [
                user_ids,
                pa.array(np.nonzero(found)[1].astype(np.int32) + 1),
                _arrow_ids(b.item_encoder, items[found]) if folded is None else folded.item_ids(items[found]),
                pa.array(scores[found], type=pa.float32()),
            ],
            names=self.output_schema().names,
        )
        return batch, users.size, int(np.count_nonzero(per_user)), int(np.count_nonzero(per_user < job.k))

    def output_schema(self) -> pa.Schema:
        """The output rows' Arrow schema: ``user_id, rank, item_id, score`` in the bundle's id types."""
        return recommend_schema(self.bundle)

    def _run_chunks(self, job: RecommendJob, spans):
        """``(lo, hi, result)`` for each span, computed in threads, in order."""
        window = 2 * self.threads
        with ThreadPoolExecutor(self.threads, "recmodels-recommend") as pool:
            pending = deque()
            try:
                for lo, hi in spans:
                    pending.append((lo, hi, pool.submit(self._chunk, job, lo, hi)))
                    if len(pending) >= window:
                        lo_, hi_, future = pending.popleft()
                        yield lo_, hi_, future.result()
                while pending:
                    lo_, hi_, future = pending.popleft()
                    yield lo_, hi_, future.result()
            finally:
                for *_, future in pending:
                    future.cancel()

    def _spans(self, start: int, stop: int, part_users: int | None):
        step = self.chunk_users
        lo = start
        while lo < stop:
            hi = min(lo + step, stop)
            if part_users:
                hi = min(hi, (lo // part_users + 1) * part_users)
            yield lo, hi
            lo = hi
