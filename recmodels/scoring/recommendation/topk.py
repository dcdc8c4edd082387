"""Each user's top-k over the candidate items, block by block, with a bundle's recommend graph.

``recommend.onnx`` (and ``retrieve.onnx``, written by the exporter, see
``recmodels/export/recommend_graph.py``) take a block of users and a tile of items and return
every user's ``k`` best items of the tile, with the excluded (seen) pairs at ``-inf``.
:class:`TopKSession` runs it over all candidates in tiles whose intermediates stay in cache, and
merges the tiles' results: the graph returns each tile's best sorted by (score descending,
position ascending), so a stable sort of the concatenated tiles (in ascending item order) by
score keeps ties going to the lower item index. Only valid indices reach the graph (CUDA's
Gather does not range-check): a tile is padded to the graph's item multiple with the last
candidate, and the padding is excluded.

``rank_all.onnx`` (no ``item_index`` input) ranks the whole catalogue in one call per block of
users, its item table a constant of the graph: the session detects it (``whole_catalogue``) and
then needs every item as a candidate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ...bundle.graph_contract import (
    EXCLUDE,
    ITEM_INDEX,
    RANK_ALL_INPUTS,
    RECOMMEND_INPUTS,
    TOP_K_OUTPUTS,
    USER_INDEX,
    K,
)
from ...errors import BundleError
from ..checks import positive_int
from ..runtime.session import load_graph

INPUTS = RECOMMEND_INPUTS
WHOLE_INPUTS = RANK_ALL_INPUTS
"""``rank_all.onnx``: the whole catalogue, ``exclude`` columns are item indices."""
OUTPUTS = TOP_K_OUTPUTS

TILING = {
    # (has an MLP tower, on CPU) -> (users per graph call, items per tile)
    (False, True): (64, 8192),  # a [64, 8192] float32 score block (2 MB): measured best on a 2-core Zen4
    (True, True): (2, 2048),  # 4,096 pairs x 128 floats per layer input (2 MB) stay in L2/L3
    (False, False): (1024, 16384),
    (True, False): (64, 8192),
}
WHOLE_BLOCK_USERS = {True: 8, False: 512}
"""Users per ``rank_all.onnx`` call, on CPU / not: 8 x 59k items (~1.9 MB of scores) measured
best on a 2-core CPU (docs/recommend.md)."""
"""Default block shapes by graph and device (docs/recommend.md, "Block sizes")."""


@dataclass(frozen=True)
class Candidates:
    """The items a user may be recommended: ascending item indices, and their positions.

    ``position[i]`` is item ``i``'s position in ``items`` (-1 when not a candidate); None when
    every item is a candidate (position = index).
    """

    items: np.ndarray
    position: np.ndarray | None = None

    @classmethod
    def every(cls, n_items: int) -> Candidates:
        return cls(np.arange(n_items, dtype=np.int64))

    @classmethod
    def of(cls, item_index, n_items: int) -> Candidates:
        """The distinct valid indices of ``item_index`` (ascending)."""
        items = np.unique(np.asarray(item_index, dtype=np.int64))
        if items.size == n_items:
            return cls.every(n_items)
        position = np.full(n_items, -1, dtype=np.int64)
        position[items] = np.arange(items.size)
        return cls(items, position)

    @property
    def size(self) -> int:
        return int(self.items.size)

    def positions(self, item_index: np.ndarray) -> np.ndarray:
        return item_index if self.position is None else self.position[item_index]


def select_top(scores: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best ``(items, scores)`` by score descending, ties to the lower item index.

    ``items`` of -1 (no item) are never chosen before a real one; rows with fewer than ``k``
    real items end in -1 / -inf.
    """
    scores = np.where(items < 0, -np.inf, scores).astype(np.float32)
    big = np.iinfo(np.int64).max
    order = np.lexsort((np.where(items < 0, big, items), -scores.astype(np.float64)), axis=-1)[:, :k]
    top_items = np.take_along_axis(items, order, axis=1)
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_items = np.where(np.isfinite(top_scores), top_items, -1)
    return top_items, top_scores


class TopKSession:
    """An onnxruntime session over a recommend graph, run block by block.

    Parameters
    ----------
    path : path-like
        ``recommend.onnx`` or ``retrieve.onnx``.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    item_multiple : int
        The graph's ``graph_recommend.item_multiple``.
    has_mlp : bool
        Whether the graph runs an MLP tower per pair (sets the default block shape).
    block_users, tile_items : int, optional
        Users per graph call and items per tile (rounded up to ``item_multiple``); default
        :data:`TILING`.
    notes : list, optional
        Receives why CUDA was not used (``auto``).

    Attributes
    ----------
    provider : str
        ``"cpu"`` or ``"cuda:N"``: the provider that actually runs the graph.
    """

    def __init__(
        self,
        path,
        device="auto",
        *,
        item_multiple: int,
        has_mlp: bool,
        block_users=None,
        tile_items=None,
        notes: list | None = None,
    ):
        positive_int("--block-users", block_users)
        positive_int("--tile-items", tile_items)
        self.session, self.provider = load_graph(path, device, notes=notes)
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        self.whole_catalogue = inputs == set(WHOLE_INPUTS)
        if (inputs != set(INPUTS) and not self.whole_catalogue) or not set(OUTPUTS) <= outputs:
            raise BundleError(
                f"{path}: graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected inputs "
                f"{', '.join(INPUTS)} and outputs {', '.join(OUTPUTS)}; re-export the bundle"
            )
        self.multiple = int(item_multiple)
        default_users, default_items = TILING[(bool(has_mlp), self.provider == "cpu")]
        if self.whole_catalogue:
            default_users = WHOLE_BLOCK_USERS[self.provider == "cpu"]
        self.block_users = int(block_users or default_users)
        tile = int(tile_items or default_items)
        self.tile_items = -(-tile // self.multiple) * self.multiple
        self.path = os.fspath(path)

    def top_k(self, user_index: np.ndarray, candidates: Candidates, k: int, seen=None):
        """``(items, scores)``, each ``[len(user_index), k]``: every user's best candidates.

        ``items`` are item indices (-1 past the end when a user has fewer than ``k`` candidates
        left after ``seen``); ``scores`` float32 (-inf there). ``seen``: a
        :class:`~recmodels.scoring.recommendation.seen.SeenItems` whose pairs are left out.
        """
        user_index = np.ascontiguousarray(user_index, dtype=np.int64)
        n = user_index.size
        items = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        for lo in range(0, n, self.block_users):
            users = user_index[lo : lo + self.block_users]
            items[lo : lo + users.size], scores[lo : lo + users.size] = self._block(
                users, candidates, k, seen
            )
        return items, scores

    def _whole(self, users: np.ndarray, candidates: Candidates, k: int, seen):
        if candidates.position is not None:
            raise ValueError("rank_all.onnx ranks every item; use the tiled graph for a candidate list")
        if seen is not None:
            rows, cols = seen.block(users)
            exclude = np.stack([rows, cols], axis=1).astype(np.int64, copy=False)
        else:
            exclude = np.zeros((0, 2), dtype=np.int64)
        kk = min(k, candidates.size)
        top_score, top_position = self.session.run(
            list(OUTPUTS), {USER_INDEX: users, EXCLUDE: exclude, K: np.array([kk], dtype=np.int64)}
        )
        found = np.isfinite(top_score)
        out_items = np.where(found, top_position, -1)
        out_scores = np.where(found, top_score, -np.inf).astype(np.float32)
        if kk < k:
            out_items = np.pad(out_items, ((0, 0), (0, k - kk)), constant_values=-1)
            out_scores = np.pad(out_scores, ((0, 0), (0, k - kk)), constant_values=-np.inf)
        return out_items, out_scores

    def _block(self, users: np.ndarray, candidates: Candidates, k: int, seen):
        if self.whole_catalogue:
            return self._whole(users, candidates, k, seen)
        n_cand, tile = candidates.size, self.tile_items
        if seen is not None:
            rows, seen_items = seen.block(users)
            cols = candidates.positions(seen_items)
            keep = cols >= 0
            rows, cols = rows[keep], cols[keep]
            order = np.argsort(cols, kind="stable")
            rows, cols = rows[order], cols[order]
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
        bounds = np.searchsorted(cols, np.arange(0, n_cand + tile, tile)) if cols.size else None
        part_scores, part_positions = [], []
        k_arr = np.empty(1, dtype=np.int64)
        for t, lo in enumerate(range(0, n_cand, tile)):
            width = min(tile, n_cand - lo)
            padded = -(-width // self.multiple) * self.multiple
            item_index = candidates.items[lo : lo + width]
            exclude = None
            if bounds is not None and bounds[t + 1] > bounds[t]:
                a, b = bounds[t], bounds[t + 1]
                exclude = np.stack([rows[a:b], cols[a:b] - lo], axis=1)
            if padded > width:
                item_index = np.concatenate([item_index, np.full(padded - width, item_index[-1])])
                pad_rows, pad_cols = np.divmod(np.arange(users.size * (padded - width)), padded - width)
                pad = np.stack([pad_rows, pad_cols + width], axis=1)
                exclude = pad if exclude is None else np.concatenate([exclude, pad])
            if exclude is None:
                exclude = np.zeros((0, 2), dtype=np.int64)
            k_arr[0] = min(k, padded)
            top_score, top_position = self.session.run(
                list(OUTPUTS),
                {
                    USER_INDEX: users,
                    ITEM_INDEX: np.ascontiguousarray(item_index, dtype=np.int64),
                    EXCLUDE: np.ascontiguousarray(exclude, dtype=np.int64),
                    K: k_arr,
                },
            )
            part_scores.append(top_score)
            part_positions.append(top_position + lo)
        if len(part_scores) == 1:
            merged_scores, merged_positions = part_scores[0], part_positions[0]
        else:
            all_scores = np.concatenate(part_scores, axis=1)
            order = np.argsort(-all_scores, axis=1, kind="stable")[:, :k]
            merged_scores = np.take_along_axis(all_scores, order, axis=1)
            merged_positions = np.take_along_axis(np.concatenate(part_positions, axis=1), order, axis=1)
        found = np.isfinite(merged_scores)
        merged_positions = np.minimum(merged_positions, n_cand - 1)  # padding is never finite
        out_items = np.where(found, candidates.items[merged_positions], -1)
        out_scores = np.where(found, merged_scores, -np.inf).astype(np.float32)
        width = out_items.shape[1]
        if width < k:  # fewer candidates in the tile than k
            out_items = np.pad(out_items, ((0, 0), (0, k - width)), constant_values=-1)
            out_scores = np.pad(out_scores, ((0, 0), (0, k - width)), constant_values=-np.inf)
        return out_items, out_scores
