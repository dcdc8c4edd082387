"""The implicit signal's parts for users and items folded in from a history (numpy only).

A model trained with the implicit user part (``ModelConfig.implicit`` ``"user"`` or ``"both"``)
adds to a user's GMF row ``|N(u)|^-1/2 sum_{j in N(u)} y_j`` over the items ``N(u)`` the user
rated; with the item part (``"item"``, the default, or ``"both"``) an item's GMF row gets
``|N(i)|^-1/2 sum_{v in N(i)} z_v`` over the users who rated it. The bundle holds, per part, the
partners' vectors in the fold-in's coordinates and, as the last row, the trained rows' mean part
(``manifest.prior.fold_in.files`` roles :data:`ROLES`: ``fold_user_implicit.npy`` holds ``y`` per
item, ``fold_item_implicit.npy`` ``z`` per user). A new user (item) whose history pairs it with
the bundle's items (users) ``H`` (each counted once) has the part ``c = |H|^-1/2 sum_{j in H}``
of their vectors; the prior row it starts from holds the mean part, so its effective row is
centred at ``prior + c - mean``: the ridge solve works on the residuals less ``x . (c - mean)``
(``x``: the partner's row) and its solution gains ``c - mean`` (:func:`part_shift`,
:func:`centred_target`, :func:`shifted`). Known users keep their trained parts (the bundle does
not hold their training items).
"""

from __future__ import annotations

import numpy as np

ROLES = {"user": "user_implicit", "item": "item_implicit"}
"""``manifest.prior.fold_in.files``' roles of the implicit parts' arrays, by the side they shift."""


def part_shift(vectors: np.ndarray | None, owner_ext: np.ndarray, partners: np.ndarray, n_own: int
               ) -> np.ndarray | None:
    """Each history row's shift ``c - mean`` of its owner (zeros for known owners), or None without
    the part.

    Parameters
    ----------
    vectors : ndarray of shape (n_partners + 1, rank), or None
        The bundle's array of the part (:data:`ROLES`; None: the model has no such part).
    owner_ext : ndarray of int
        Each row's owner ``ext`` index (the user for the user part, the item for the item part;
        new owners ``> n_own``).
    partners : ndarray of int
        Each row's partner (the bundle's rows only): the item, or the user.
    n_own : int
        The bundle's owners (the prior row's index).

    Returns
    -------
    ndarray of shape (rows, rank), float64, or None
    """
    if vectors is None:
        return None
    vectors = np.asarray(vectors, dtype=np.float64)
    shift = np.zeros((owner_ext.size, vectors.shape[1]))
    new = owner_ext > n_own
    if not new.any():
        return shift
    pairs = np.unique(np.stack([owner_ext[new], partners[new]], axis=1), axis=0)  # sorted, each pair once
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
    """The solved owners' changes ``[d_row, d_bias]`` plus their shifts (``delta`` without a shift)."""
    if shift is None or owners.size == 0:
        return delta
    seen, first = np.unique(owner_ext, return_index=True)
    out = np.array(delta, dtype=np.float64, copy=True)
    out[:, :shift.shape[1]] += shift[first[np.searchsorted(seen, owners)]]
    return out


__all__ = ["ROLES", "centred_target", "part_shift", "shifted"]
