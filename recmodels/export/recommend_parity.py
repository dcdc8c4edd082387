"""Parity of the recommend graphs: ``recommend.onnx`` (and ``retrieve.onnx``) against ``model.onnx``,
``rank_all.onnx`` against the dot-product part (split from :mod:`.parity`, which re-exports them)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from ..bundle.graph_contract import EXCLUDE, ITEM_INDEX, TOP_POSITION, TOP_SCORE, USER_INDEX, K
from ..errors import ParityError
from .parity import TOLERANCE, cpu_session, run_pairs

RECOMMEND_USERS = 48
RECOMMEND_ITEMS = 448
"""At most this many users x items in the recommend graph's parity block."""


def _recommend_block(n_users: int, n_items: int, multiple: int, seed: int):
    """Users and ascending items (corners included), padded to ``multiple``, and the exclusions."""
    rng = np.random.default_rng(seed + 2)
    users = np.unique(np.concatenate([[0, n_users - 1],
                                      rng.integers(0, n_users, max(0, min(n_users, RECOMMEND_USERS) - 2))]))
    items = np.unique(np.concatenate([[0, n_items - 1],
                                      rng.integers(0, n_items, max(0, min(n_items, RECOMMEND_ITEMS) - 2))]))
    real = items.size
    padded = -(-real // multiple) * multiple
    items = np.concatenate([items, np.full(padded - real, items[-1])])
    rows, cols = np.nonzero(rng.random((users.size, real)) < 0.05)  # some pairs excluded...
    pad_rows, pad_cols = np.divmod(np.arange(users.size * (padded - real)), padded - real or 1)
    exclude = np.stack([np.concatenate([rows, pad_rows]),  # ... and every padding column
                        np.concatenate([cols, real + pad_cols])], axis=1).astype(np.int64)
    return users.astype(np.int64), items.astype(np.int64), real, exclude


def _top_block(session, users, items, exclude, k: int):
    feed = {USER_INDEX: users, ITEM_INDEX: items, EXCLUDE: exclude, K: np.array([k], dtype=np.int64)}
    score, position = session.run([TOP_SCORE, TOP_POSITION], feed)
    if score.dtype != np.float32 or position.dtype != np.int64 or score.shape != (users.size, k):
        raise ParityError(
            f"recommend parity check failed: graph returned {score.dtype} {score.shape} / {position.dtype}, "
            f"expected float32 / int64 ({users.size}, {k}); no bundle was written"
        )
    return score, position


def _check_ranking(session, users, items, real, exclude, expected, what: str) -> float:
    """Full ranking (k = all columns) and top-10 of one block against dense ``expected`` scores."""
    n_cols = items.size
    score, position = _top_block(session, users, items, exclude, n_cols)
    allowed = np.ones((users.size, n_cols), dtype=bool)
    allowed[exclude[:, 0], exclude[:, 1]] = False
    finite = np.isfinite(score)
    problems = []
    if not np.array_equal(finite.sum(axis=1), allowed.sum(axis=1)):
        problems.append("excluded pairs were not scored -inf (or allowed ones were)")
    else:
        rows = np.nonzero(finite)[0]
        cols = position[finite]
        if not allowed[rows, cols].all() or np.unique(rows * n_cols + cols).size != rows.size:
            problems.append("positions of the ranked items are wrong")
        with np.errstate(invalid="ignore"):  # -inf - -inf in the excluded tail
            rising = np.diff(score, axis=1)[np.isfinite(score[:, 1:])] > 0
        if np.any(rising):
            problems.append("scores are not in descending order")
    worst = 0.0
    if not problems:
        got = score[finite].astype(np.float64)
        worst = float(np.max(np.abs(got - expected[rows, cols]))) if got.size else 0.0
        k = min(10, n_cols)
        top_score, top_position = _top_block(session, users, items, exclude, k)
        same = np.array_equal(top_position[finite[:, :k]], position[:, :k][finite[:, :k]])
        if not same or not np.array_equal(top_score, score[:, :k]):
            problems.append(f"top-{k} differs from the full ranking (ties must go to the lower position)")
    if problems:
        raise ParityError(f"{what} parity check failed: {problems[0]}; no bundle was written")
    return worst


def check_recommend_parity(
    model_path: str | os.PathLike,
    recommend_path: str | os.PathLike,
    n_users: int,
    n_items: int,
    *,
    item_multiple: int,
    retrieve_path: str | os.PathLike | None = None,
    retrieve_reference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict:
    """``recommend.onnx`` against ``model.onnx`` (and ``retrieve.onnx`` against its reference).

    One block of up to 48 users x 448 items (corners included, items ascending, padded to
    ``item_multiple`` with excluded columns, ~5% of the pairs excluded) is ranked completely
    (``k`` = every column): each allowed pair must come back exactly once, in descending order,
    with the score ``model.onnx`` gives it within ``tolerance``, and every excluded pair as
    ``-inf``; the top-10 of the same block must be the full ranking's first ten (ties to the
    lower position).

    Returns
    -------
    dict
        ``{"passed", "max_abs_diff", "tolerance", "n_users", "n_items", "n_excluded", "provider",
        "seed", "retrieve_max_abs_diff"}`` (the manifest's ``parity.recommend``).

    Raises
    ------
    ParityError
    """
    users, items, real, exclude = _recommend_block(n_users, n_items, item_multiple, seed)
    pair_users, pair_items = np.repeat(users, items.size), np.tile(items, users.size)
    expected = run_pairs(cpu_session(model_path), pair_users, pair_items, 4096)
    expected = expected.reshape(users.size, items.size)
    worst = _check_ranking(cpu_session(recommend_path), users, items, real, exclude,
                           expected.astype(np.float64), "recommend")
    retrieve_worst = None
    if retrieve_path is not None:
        dot = np.asarray(retrieve_reference(pair_users, pair_items), dtype=np.float64)
        retrieve_worst = _check_ranking(cpu_session(retrieve_path), users, items, real, exclude,
                                        dot.reshape(users.size, items.size), "retrieve")
    worst_of_both = max(worst, retrieve_worst or 0.0)
    if not worst_of_both <= tolerance:
        which = "recommend" if worst >= (retrieve_worst or 0.0) else "retrieve"
        raise ParityError(
            f"{which} parity check failed: max |{which}.onnx - "
            f"{'model.onnx' if which == 'recommend' else 'dot-product reference'}| = {worst_of_both:.3g} "
            f"exceeds tolerance {tolerance:g}; no bundle was written"
        )
    return {
        "passed": True,
        "max_abs_diff": worst,
        "tolerance": tolerance,
        "n_users": int(users.size),
        "n_items": int(real),
        "n_excluded": int(exclude.shape[0]),
        "provider": "CPUExecutionProvider",
        "seed": seed,
        "retrieve_max_abs_diff": retrieve_worst,
    }


RANK_ALL_PAIRS = 1 << 21
"""At most about this many (user, item) pairs in the whole-catalogue parity block."""


def check_rank_all_parity(
    rank_all_path: str | os.PathLike,
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_users: int,
    n_items: int,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> float:
    """``rank_all.onnx`` against the float64 dot-product part, over the whole catalogue.

    Up to 48 users (fewer for a huge catalogue), ~5% of their pairs excluded: each user's
    top-``k`` (``k`` up to 64) must be allowed, distinct, real items (never padding), in
    descending order, with scores within ``tolerance`` of ``reference``; no allowed item left
    out may beat the ``k``-th by more than ``tolerance``; ties go to the lower item index.

    Returns
    -------
    float
        The largest score difference (the manifest's ``parity.rank_all_max_abs_diff``).

    Raises
    ------
    ParityError
    """
    rng = np.random.default_rng(seed + 3)
    n_block = max(1, min(RECOMMEND_USERS, n_users, RANK_ALL_PAIRS // n_items))
    users = np.unique(np.concatenate([[0, n_users - 1], rng.integers(0, n_users, n_block)]))[:n_block]
    users = users.astype(np.int64)
    expected = np.asarray(
        reference(np.repeat(users, n_items), np.tile(np.arange(n_items), users.size)), dtype=np.float64
    ).reshape(users.size, n_items)
    rows, cols = np.nonzero(rng.random((users.size, n_items)) < 0.05)
    exclude = np.stack([rows, cols], axis=1).astype(np.int64)
    allowed = np.ones(expected.shape, dtype=bool)
    allowed[rows, cols] = False
    k = min(64, n_items)
    score, position = cpu_session(rank_all_path).run(
        [TOP_SCORE, TOP_POSITION],
        {USER_INDEX: users, EXCLUDE: exclude, K: np.array([k], dtype=np.int64)},
    )
    problems, worst = [], 0.0
    n_allowed = np.minimum(allowed.sum(axis=1), k)
    finite = np.isfinite(score)
    if score.shape != (users.size, k) or not np.array_equal(finite.sum(axis=1), n_allowed):
        problems.append("it returned the wrong number of items (or scored padding / excluded pairs)")
    else:
        r = np.nonzero(finite)[0]
        c = position[finite]
        if np.any(c < 0) or np.any(c >= n_items) or not allowed[r, c].all():
            problems.append("it returned padding or excluded items")
        elif np.unique(r * n_items + c).size != r.size:
            problems.append("it returned an item twice")
        else:
            worst = float(np.max(np.abs(score[finite] - expected[r, c])))
            left = np.where(allowed, expected, -np.inf)
            left[r, c] = -np.inf
            kth = np.where(finite, score, np.inf).min(axis=1)
            if np.any(left.max(axis=1) > kth + tolerance):
                problems.append("a better item was left out")
            with np.errstate(invalid="ignore"):
                if np.any(np.diff(score, axis=1)[finite[:, 1:]] > 0):
                    problems.append("scores are not in descending order")
    if problems or not worst <= tolerance:
        what = problems[0] if problems else f"max |rank_all.onnx - dot-product reference| = {worst:.3g}"
        raise ParityError(f"rank_all parity check failed: {what}; no bundle was written")
    return worst
