"""Candidate sets of the NCF ranking protocol, and the rank of each held-out item in them (numpy).

Every held-out (user, item) pair is ranked among items its user never rated, in training or in the
held-out data: ``negatives`` of them sampled uniformly without replacement (:func:`rank_sampled`,
seeded), or all of them (:func:`rank_all_items`). Each predictor is scored on the same candidates;
what is returned per row is how many candidates score above the held-out item and how many level
with it, from which :mod:`recmodels.metrics` computes HR@K and NDCG@K under a tie rule.
"""

from __future__ import annotations

import numpy as np

from ...metrics import rank_counts

PAIRS_PER_CALL = 1 << 21
"""Candidate pairs scored per predictor call (bounds the memory of ranking)."""
_MAX_ROUNDS = 64  # rejection-sampling rounds before a row's negatives are drawn exactly


def rated_keys(user_index, item_index, n_items: int) -> np.ndarray:
    """Sorted unique keys ``user * n_items + item`` of rated pairs (for :func:`sample_negatives`)."""
    keys = np.asarray(user_index, dtype=np.int64) * n_items + np.asarray(item_index, dtype=np.int64)
    return np.unique(keys)


def _is_rated(keys: np.ndarray, rated: np.ndarray) -> np.ndarray:
    """Elementwise: is ``user * n_items + item`` among the sorted ``rated`` keys."""
    if rated.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(rated, keys), rated.size - 1)
    return rated[pos] == keys


def _unrated(user: int, rated: np.ndarray, n_items: int) -> np.ndarray:
    lo, hi = np.searchsorted(rated, [user * n_items, (user + 1) * n_items])
    return np.setdiff1d(np.arange(n_items), rated[lo:hi] - user * n_items, assume_unique=True)


def sample_negatives(rng: np.random.Generator, users: np.ndarray, rated: np.ndarray, n_items: int,
                     n: int) -> np.ndarray:
    """``n`` distinct items per row that the row's user never rated, uniformly (seeded by ``rng``).

    Parameters
    ----------
    rng : numpy.random.Generator
    users : ndarray of int, shape (rows,)
    rated : ndarray of int64
        Sorted unique keys ``user * n_items + item`` of every rated pair (training and held out).
    n_items, n : int

    Returns
    -------
    ndarray of int64, shape (rows, n)
        Item indices in increasing order per row; a user with fewer than ``n`` unrated items gets
        all of them and -1 in the remaining slots.
    """
    users = np.asarray(users, dtype=np.int64)
    neg = np.full((users.size, n), -1, dtype=np.int64)
    rated_per_user = np.searchsorted(rated, (users + 1) * n_items) - np.searchsorted(rated, users * n_items)
    enough = n_items - rated_per_user >= n
    idx = np.flatnonzero(enough)
    cand = rng.integers(0, n_items, size=(idx.size, n))
    base = (users[idx] * n_items)[:, None]
    rows = np.arange(idx.size)
    for _ in range(_MAX_ROUNDS):  # rejection: redraw rated items and repeats until none are left
        sub = np.sort(cand[rows], axis=1)
        bad = _is_rated(base[rows] + sub, rated)
        bad[:, 1:] |= sub[:, 1:] == sub[:, :-1]
        cand[rows] = sub
        dirty = bad.any(axis=1)
        rows, sub, bad = rows[dirty], sub[dirty], bad[dirty]
        if rows.size == 0:
            break
        sub[bad] = rng.integers(0, n_items, size=int(bad.sum()))
        cand[rows] = sub
    else:  # users who rated nearly everything: draw from their unrated items directly
        for r in rows:
            cand[r] = np.sort(rng.choice(_unrated(int(users[idx[r]]), rated, n_items), n, replace=False))
    neg[idx] = cand
    for r in np.flatnonzero(~enough):
        items = _unrated(int(users[r]), rated, n_items)
        neg[r, : items.size] = items
    return neg


def rank_sampled(predictors: dict, users, items, rated, n_items: int, negatives: int, seed: int):
    """Rank counts of each held-out pair among ``negatives`` sampled items its user never rated.

    Parameters
    ----------
    predictors : dict
        Name -> ``predict(user_index, item_index) -> scores``; all see the same candidates.
    users, items : ndarray of int64, shape (rows,)
        The held-out pairs (bundle indices, all known).
    rated : ndarray of int64
        Sorted unique keys ``user * n_items + item`` of every rated pair.
    n_items, negatives, seed : int

    Returns
    -------
    (dict, int)
        Name -> ``(greater, tied)`` (see :func:`recmodels.metrics.rank_counts`), and the number of
        rows whose user had fewer than ``negatives`` unrated items (ranked among all of those).
    """
    rng = np.random.default_rng(seed)
    out = {name: (np.empty(users.size, np.int64), np.empty(users.size, np.int64)) for name in predictors}
    short = 0
    step = max(1, PAIRS_PER_CALL // (negatives + 1))
    for lo in range(0, users.size, step):
        cu, ci = users[lo : lo + step], items[lo : lo + step]
        cand = np.concatenate([ci[:, None], sample_negatives(rng, cu, rated, n_items, negatives)], axis=1)
        valid = cand >= 0
        short += int((~valid).any(axis=1).sum())
        pu, pi = np.broadcast_to(cu[:, None], cand.shape)[valid], cand[valid]
        for name, predict in predictors.items():
            scores = np.full(cand.shape, np.nan)
            scores[valid] = predict(pu, pi)
            greater, tied = rank_counts(scores[:, 0], scores[:, 1:], valid[:, 1:])
            out[name][0][lo : lo + step], out[name][1][lo : lo + step] = greater, tied
    return out, short


def rank_all_items(predictors: dict, users, items, rated, n_items: int) -> dict:
    """Rank counts of each held-out pair among all items its user never rated.

    Same arguments and first result as :func:`rank_sampled`; users are scored against every item
    in blocks of about :data:`PAIRS_PER_CALL` pairs.
    """
    out = {name: (np.empty(users.size, np.int64), np.empty(users.size, np.int64)) for name in predictors}
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    distinct = np.unique(users)
    all_items = np.arange(n_items)
    step = max(1, PAIRS_PER_CALL // n_items)  # users per block, and held-out rows per comparison
    for lo in range(0, distinct.size, step):
        block = distinct[lo : lo + step]
        first = np.searchsorted(sorted_users, block[0])
        rows = order[first : np.searchsorted(sorted_users, block[-1], "right")]
        valid = ~_is_rated(block[:, None] * n_items + all_items[None, :], rated)  # held-out items too
        pu, pi = np.repeat(block, n_items), np.tile(all_items, block.size)
        for name, predict in predictors.items():
            scores = predict(pu, pi).reshape(block.size, n_items)
            for r0 in range(0, rows.size, step):
                part = rows[r0 : r0 + step]
                local = np.searchsorted(block, users[part])
                greater, tied = rank_counts(scores[local, items[part]], scores[local], valid[local])
                out[name][0][part], out[name][1][part] = greater, tied
    return out
