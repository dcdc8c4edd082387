"""Batched ridge solves of many small rows at once (numpy only): the fold-in's arithmetic.

A folded-in row (a user, or an item) has coefficients ``c = [vector, bias]``; each of its
history ratings ``r`` against a partner with features ``x = [partner vector, 1]`` contributes
``(r - base - x . c)^2``, and ``c`` pays ``c^T (diag(precision) + n * moment) c`` (``n``: its
training ratings, 0 for a new row; ``moment``: the mean ``x x^T`` over the training rows, which
stands in for the normal equations of the ratings it was trained on). The minimiser solves
``(X^T X + diag(precision) + n * moment) c = X^T (r - base)``.

:func:`ridge_solve` gathers the rows' history ratings in zero-padded blocks (memory grows with
the history, never with users x items) and solves each block with one batched
``numpy.linalg.solve``: a row with fewer ratings ``m`` than coefficients ``k`` and no training
weight (a new user, a new item: ``k`` = 33 and ``m`` = 1..20 in the benchmark) in the dual form,
``c = L^-1 X^T (X L^-1 X^T + I)^-1 y`` with ``L = diag(precision)``, an ``m x m`` system instead of
``k x k``; the others by the normal equations. :func:`gradient_solve` is the alternative measured
against it in ``benchmarks/cold_start.py`` (a few gradient steps on the same objective).
"""

from __future__ import annotations

import numpy as np

BLOCK_BYTES = 16 * 2**20
"""Working memory of one zero-padded ``[rows, ratings, k]`` block."""


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


def _chunks(sizes: np.ndarray, width: int):
    """Owners in ascending order of their row counts, in chunks whose zero-padded
    ``[owners, largest count, width]`` block fits in :data:`BLOCK_BYTES`."""
    order = np.argsort(sizes, kind="stable")
    budget = max(1, BLOCK_BYTES // (8 * width))
    pos, n = 0, order.size
    while pos < n:
        end = min(n, pos + max(1, budget // max(1, int(sizes[order[pos]]))))
        while end - pos > 1 and (end - pos) * int(sizes[order[end - 1]]) > budget:
            end = pos + max(1, (end - pos) // 2)
        yield order[pos:end], int(sizes[order[end - 1]])
        pos = end


def _dual(xs: np.ndarray, ys: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``[owners, k]`` solutions of ``[owners, m, k]`` zero-padded rows by ``m x m`` systems."""
    scale = 1.0 / np.sqrt(precision)
    xs = xs * scale
    kernel = np.matmul(xs, xs.transpose(0, 2, 1))
    diagonal = np.arange(xs.shape[1])
    kernel[:, diagonal, diagonal] += 1.0
    alpha = np.linalg.solve(kernel, ys[:, :, None])[:, :, 0]
    return np.einsum("omk,om->ok", xs, alpha) * scale


def _primal(xs: np.ndarray, ys: np.ndarray, precision: np.ndarray, weight: np.ndarray | None,
            moment: np.ndarray | None) -> np.ndarray:
    """``[owners, k]`` solutions of ``[owners, m, k]`` zero-padded rows by the normal equations."""
    lhs = np.matmul(xs.transpose(0, 2, 1), xs)
    diagonal = np.arange(xs.shape[2])
    lhs[:, diagonal, diagonal] += precision
    if weight is not None:
        lhs += weight[:, None, None] * moment
    rhs = np.einsum("omk,om->ok", xs, ys)
    return np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]


def ridge_solve(owner: np.ndarray, features: np.ndarray, target: np.ndarray, precision,
                n_owners: int, *, counts: np.ndarray | None = None,
                moment: np.ndarray | None = None) -> np.ndarray:
    """Every owner's ridge solution ``[vector, bias]`` (see the module docstring).

    Each owner's rows are gathered into a zero-padded block (owners of similar row counts
    together, so the padding stays small; padding rows change no solution) and solved in the
    dual form when the block has fewer rows than coefficients and no training weight, else by
    the normal equations; memory is bounded by :data:`BLOCK_BYTES` per block.

    Parameters
    ----------
    owner : ndarray of int, shape (rows,)
        The row each rating folds into, ``0 .. n_owners - 1``; every owner has at least one rating.
    features : ndarray, shape (rows, rank)
        The partner's vector of each rating.
    target : ndarray, shape (rows,)
        Rating minus the base score.
    precision : sequence of float, length rank + 1
        Prior precision of each coefficient (the bias last), positive.
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
    rows_in = np.asarray(owner).size
    order, starts = _groups(np.asarray(owner), n_owners)
    x = np.zeros((rows_in + 1, k))  # the last row stays zero: the padding
    x[:rows_in, :-1] = np.asarray(features)[order]
    x[:rows_in, -1] = 1.0
    y = np.zeros(rows_in + 1)
    y[:rows_in] = np.asarray(target, dtype=np.float64)[order]
    precision = np.asarray(precision, dtype=np.float64)
    weighted = counts is not None and moment is not None
    sizes = np.diff(starts)
    for chunk, most in _chunks(sizes, k):
        step = np.arange(most)[None, :]
        rows = np.where(step < sizes[chunk][:, None], starts[chunk][:, None] + step, rows_in)
        weight = counts[chunk] if weighted and np.any(counts[chunk]) else None
        if weight is None and most < k:
            out[chunk] = _dual(x[rows], y[rows], precision)
        else:
            out[chunk] = _primal(x[rows], y[rows], precision, weight, moment)
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
