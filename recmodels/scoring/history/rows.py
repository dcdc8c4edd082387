"""Which graph rows a batch of ids is scored with: known rows, prior rows, folded-in rows (numpy)."""

from __future__ import annotations

import numpy as np


def graph_rows(user_index: np.ndarray, item_index: np.ndarray, prior_rows: tuple[int, int] | None,
               fold=None, *, use_prior: bool = True):
    """The graph's indices of a batch, the folded-in indices and the rows left to the fallback.

    Parameters
    ----------
    user_index, item_index : ndarray of int64
        The bundle's indices (``-1``: unknown or null), extended with the fold-in's new ids
        (:meth:`~recmodels.scoring.history.FoldIn.extend`).
    prior_rows : (int, int) or None
        The bundle's prior user and item rows (None: a bundle from before them).
    fold : FoldIn, optional
    use_prior : bool
        Score a pair with one unknown side with that side's prior row (the fallback policy);
        otherwise every pair with an unknown side is left to the caller's policy.

    Returns
    -------
    (graph_user, graph_item, ext, unscored)
        Valid graph indices (an unscored row's are arbitrary valid ones); ``ext`` the
        ``(user, item)`` indices for :meth:`~recmodels.scoring.history.FoldIn.adjust` or None
        without a fold-in; ``unscored`` the rows to give the fallback score.
    """
    bad_user, bad_item = user_index < 0, item_index < 0
    if prior_rows is None or not use_prior:
        unscored = bad_user | bad_item
        graph_user, graph_item = np.maximum(user_index, 0), np.maximum(item_index, 0)
        nu = ni = None
    else:
        nu, ni = prior_rows
        unscored = bad_user & bad_item
        graph_user = np.where(bad_user, nu, np.minimum(user_index, nu))
        graph_item = np.where(bad_item, ni, np.minimum(item_index, ni))
    ext = None
    if fold is not None:
        nu, ni = fold.users.n, fold.items.n
        ext = (np.where(bad_user, nu, user_index), np.where(bad_item, ni, item_index))
        if prior_rows is None or not use_prior:
            graph_user, graph_item = np.minimum(graph_user, nu), np.minimum(graph_item, ni)
    return graph_user, graph_item, ext, unscored
