"""The implicit signal's user part for users folded in from a history (numpy only).

A model trained with the implicit user part (``ModelConfig.implicit`` ``"user"`` or ``"both"``)
adds to a user's GMF row ``|N(u)|^-1/2 sum_{j in N(u)} y_j`` over the items ``N(u)`` the user
rated. Its bundle holds ``fold_user_implicit.npy`` (``manifest.prior.fold_in.files`` role
:data:`ROLE`): ``y_j`` of every item in the coordinates of the fold-in's ``P``, and as its last
row the trained users' mean part. A new user whose history rates the bundle's items ``H`` (each
counted once) has the part ``c = |H|^-1/2 sum_{j in H} y_j``; the prior user row it starts from
holds the mean part, so its effective row is centred at ``prior + c - mean``: the ridge solve
works on the residuals less ``Q_i . (c - mean)`` and its solution gains ``c - mean``
(:func:`user_shift`, :func:`centred_target`, :func:`shifted`). Known users keep their trained
parts (the bundle does not hold their training items).
"""

from __future__ import annotations

import numpy as np

ROLE = "user_implicit"
"""``manifest.prior.fold_in.files``' role of the implicit user part's array."""


def user_shift(vectors: np.ndarray | None, owner_ext: np.ndarray, items: np.ndarray, n_users: int
               ) -> np.ndarray | None:
    """Each history row's user shift ``c - mean`` (zeros for known users), or None without the part.

    Parameters
    ----------
    vectors : ndarray of shape (n_items + 1, rank), or None
        The bundle's :data:`ROLE` array (None: the model has no implicit user part).
    owner_ext : ndarray of int
        Each row's user ``ext`` index (new users ``> n_users``).
    items : ndarray of int
        Each row's item (the bundle's rows only).
    n_users : int
        The bundle's users (the prior row's index).

    Returns
    -------
    ndarray of shape (rows, rank), float64, or None
    """
    if vectors is None:
        return None
    vectors = np.asarray(vectors, dtype=np.float64)
    shift = np.zeros((owner_ext.size, vectors.shape[1]))
    new = owner_ext > n_users
    if not new.any():
        return shift
    pairs = np.unique(np.stack([owner_ext[new], items[new]], axis=1), axis=0)  # sorted, each item once
    owners, starts, counts = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    parts = np.add.reduceat(vectors[pairs[:, 1]], starts, axis=0) / np.sqrt(counts)[:, None]
    shift[new] = (parts - vectors[-1])[np.searchsorted(owners, owner_ext[new])]
    return shift


def centred_target(target: np.ndarray, features: np.ndarray, shift: np.ndarray | None) -> np.ndarray:
    """The residuals less each row's shift's share ``features . shift`` (``target`` without a shift)."""
    if shift is None:
        return target
    return target - np.einsum("ij,ij->i", features, shift)


def shifted(delta: np.ndarray, owners: np.ndarray, owner_ext: np.ndarray, shift: np.ndarray | None
            ) -> np.ndarray:
    """The solved owners' changes ``[d_P, d_bias]`` plus their shifts (``delta`` without a shift)."""
    if shift is None or owners.size == 0:
        return delta
    seen, first = np.unique(owner_ext, return_index=True)
    out = np.array(delta, dtype=np.float64, copy=True)
    out[:, :shift.shape[1]] += shift[first[np.searchsorted(seen, owners)]]
    return out


__all__ = ["ROLE", "centred_target", "shifted", "user_shift"]
