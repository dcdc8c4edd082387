"""Batched ridge solves of many small rows at once (numpy only): the fold-in's arithmetic.

A folded-in row (a user, or an item) has coefficients ``c = [vector, bias]``; each of its
history ratings ``r`` against a partner with features ``x = [partner vector, 1]`` contributes
``(r - base - x . c)^2``, and ``c`` pays ``c^T (diag(precision) + n * moment) c`` (``n``: its
training ratings, 0 for a new row; ``moment``: the mean ``x x^T`` over the training rows, which
stands in for the normal equations of the ratings it was trained on). The minimiser solves
``(X^T X + diag(precision) + n * moment) c = X^T (r - base)``.

:func:`ridge_solve` builds every row's normal equations from its history ratings in blocks of
rows (memory grows with the history, never with users x items) and solves them all with one
batched ``numpy.linalg.solve`` per block; :func:`gradient_solve` is the alternative measured
against it in ``benchmarks/cold_start.py`` (a few gradient steps on the same objective).
"""

from __future__ import annotations

import numpy as np

BLOCK_BYTES = 64 * 2**20
"""Working memory of one block of outer products."""


def design(features: np.ndarray) -> np.ndarray:
    """``[features, 1]`` as float64 (the bias column last)."""
    x = np.empty((features.shape[0], features.shape[1] + 1), dtype=np.float64)
    x[:, :-1] = features
    x[:, -1] = 1.0
    return x


def _groups(owner: np.ndarray, n_owners: int):
    """Rows ordered by owner, and ``starts[o]``: the first ordered row of owner ``o``."""
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(n_owners + 1))
    return order, starts


def ridge_solve(owner: np.ndarray, features: np.ndarray, target: np.ndarray, precision,
                n_owners: int, *, counts: np.ndarray | None = None,
                moment: np.ndarray | None = None) -> np.ndarray:
    """Every owner's ridge solution ``[vector, bias]`` (see the module docstring).

    Parameters
    ----------
    owner : ndarray of int, shape (rows,)
        The row each rating folds into, ``0 .. n_owners - 1``; every owner has at least one rating.
    features : ndarray, shape (rows, rank)
        The partner's vector of each rating.
    target : ndarray, shape (rows,)
        Rating minus the base score.
    precision : sequence of float, length rank + 1
        Prior precision of each coefficient (the bias last).
    counts : ndarray of int, shape (n_owners,), optional
        Training ratings of each owner (known rows); with ``moment`` [rank + 1, rank + 1].

    Returns
    -------
    ndarray of float64, shape (n_owners, rank + 1)
    """
    k = features.shape[1] + 1
    out = np.zeros((n_owners, k))
    if n_owners == 0:
        return out
    order, starts = _groups(np.asarray(owner), n_owners)
    x = design(np.asarray(features, dtype=np.float64)[order])
    y = np.asarray(target, dtype=np.float64)[order]
    penalty = np.diag(np.asarray(precision, dtype=np.float64))
    per_block = max(1, BLOCK_BYTES // (8 * k * k))
    # owners whose first row falls in the same block of rows are solved together
    block_of = starts[:-1] // per_block
    edges = np.flatnonzero(np.diff(block_of)) + 1
    for a, b in zip(np.concatenate([[0], edges]), np.concatenate([edges, [n_owners]]), strict=True):
        lo, hi = starts[a], starts[b]
        xs = x[lo:hi]
        at = starts[a:b] - lo
        gram = np.add.reduceat(xs[:, :, None] * xs[:, None, :], at, axis=0)
        rhs = np.add.reduceat(xs * y[lo:hi, None], at, axis=0)
        lhs = gram + penalty
        if counts is not None and moment is not None:
            lhs = lhs + counts[a:b, None, None] * moment
        out[a:b] = np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]
    return out


def gradient_solve(owner: np.ndarray, features: np.ndarray, target: np.ndarray, precision,
                   n_owners: int, *, steps: int, counts: np.ndarray | None = None,
                   moment: np.ndarray | None = None) -> np.ndarray:
    """The same objective as :func:`ridge_solve`, minimised by ``steps`` gradient steps from 0.

    Each owner's step is ``1 / L`` with ``L`` a bound on its objective's curvature (the sum of
    its rows' squared norms plus the largest precision), so the steps never diverge. Measured
    against :func:`ridge_solve` in ``benchmarks/cold_start.py``.
    """
    k = features.shape[1] + 1
    owner = np.asarray(owner)
    x = design(np.asarray(features, dtype=np.float64))
    y = np.asarray(target, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    out = np.zeros((n_owners, k))
    curvature = np.bincount(owner, weights=np.einsum("ij,ij->i", x, x), minlength=n_owners) + prec.max()
    extra = None
    if counts is not None and moment is not None:
        extra = counts[:, None, None] * moment
        curvature = curvature + counts * np.abs(moment).sum(axis=1).max()
    step = 1.0 / curvature
    for _ in range(int(steps)):
        residual = y - np.einsum("ij,ij->i", x, out[owner])
        grad = -np.stack([np.bincount(owner, weights=x[:, j] * residual, minlength=n_owners)
                          for j in range(k)], axis=1) + prec * out
        if extra is not None:
            grad += np.einsum("oij,oj->oi", extra, out)
        out -= step[:, None] * grad
    return out
