"""The refit's regression of an implicit table (``ModelConfig.implicit``), every other value held.

A side's implicit parts (the centres of its GMF rows, :mod:`recmodels.models.implicit`) are
``C = A @ X``: ``A`` the normalised "rated" matrix (own row x partner), ``X`` the implicit table,
here in the refit's coordinates. With the other side's rows ``F``, the own table rows ``T`` (the
effective rows minus their centres), the biases and the rest of the model held, the training
rows' squared error is a ridge regression in ``X``::

    min_X  sum over ratings (t - F[other] . (A X)[own]) ** 2 + lam * ||X|| ** 2
    t = rating - rest - biases - F[other] . T[own]

Unlike the rows' regressions it does not split into one small problem per row (a rater's vector
sits in the centre of every item they rated), so it is solved whole: preconditioned conjugate
gradients on its normal equations ``(A^T H A + lam I) X = A^T b`` (``H``: per own row, the sum of
``F F^T`` over its ratings; ``b``: of ``F t``), matrix-free, so one iteration is one pass over the
training rows, in blocks (bounded memory), with the operator's diagonal as the preconditioner.
"""

from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn

from .refit_solve import BLOCK_BYTES, GATHER_BYTES, conjugate_gradient

# The implicit tables' ridge weights, chosen on validation at every implicit half-sweep (each solve
# starts from the last one's result). Measured picks: 16 and 64 on MovieLens and Goodreads (the
# grid 16-1024 first: 1024 never won).
IMPLICIT_LAMBDAS = (4.0, 16.0, 64.0, 256.0)
# The conjugate gradients stop at this residual, relative to the right-hand side's (the
# validation MSEs they are chosen on agree to 4 decimals with 1e-8), or after this many iterations.
TOLERANCE = 1e-5
MAX_ITERATIONS = 200


def _product(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return matrix @ dense


def implicit_matrices(model: nn.Module) -> dict:
    """Per side with an implicit part, its ``(A, A^T)`` as float64 sparse CSR (the part is
    ``A @ table``)."""
    out = {}
    for side in ("user", "item"):
        if getattr(model, "has_implicit_part", lambda _: False)(side):
            out[side] = (model._matrix(side).to(torch.float64),
                         model._matrix(side, transpose=True).to(torch.float64))
    return out


class ImplicitRegression:
    """The normal equations of one implicit table's ridge regression (module docstring).

    Parameters
    ----------
    own, other : torch.Tensor
        int64 ``(n,)``: each training row's own row (whose centre the table makes) and partner.
    features : torch.Tensor
        float64 ``(n_other, k)``: the partners' rows ``F``.
    target : torch.Tensor
        float64 ``(n,)``: ``t``.
    matrices : tuple of torch.Tensor
        ``(A, A^T)``, float64 sparse CSR, ``A``: ``(n_own, n_table)``.
    """

    def __init__(self, own: torch.Tensor, other: torch.Tensor, features: torch.Tensor,
                 target: torch.Tensor, matrices: tuple):
        self.own, self.other, self.features = own, other, features
        self.a, self.at = matrices
        self.n_own, k = self.a.shape[0], features.shape[1]
        step = max(1, BLOCK_BYTES // (8 * k))
        n = own.shape[0]
        self.blocks = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
        gathered = 8 * n * k <= GATHER_BYTES  # else gathered again at every pass
        self.gathered = [features[other[lo:hi]] if gathered else None for lo, hi in self.blocks]
        self.rhs = _product(self.at, self._scatter(lambda f, lo, hi: f * target[lo:hi, None]))
        squared = torch.sparse_csr_tensor(self.at.crow_indices(), self.at.col_indices(),
                                          self.at.values() ** 2, size=self.at.shape)
        self.diagonal = _product(squared, self._scatter(lambda f, lo, hi: f * f))

    def _scatter(self, per_rating) -> torch.Tensor:
        """Per own row, the sum over its ratings of ``per_rating(F[other], lo, hi)``, ``(n_own, k)``."""
        out = torch.zeros(self.n_own, self.features.shape[1], dtype=torch.float64)
        for (lo, hi), f in zip(self.blocks, self.gathered, strict=True):
            f = self.features[self.other[lo:hi]] if f is None else f
            out.index_add_(0, self.own[lo:hi], per_rating(f, lo, hi))
        return out

    def apply(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        """``(A^T H A + lam I) x``."""
        centres = _product(self.a, x)

        def outer(f, lo, hi):
            return f * torch.einsum("ij,ij->i", f, centres.index_select(0, self.own[lo:hi]))[:, None]

        return _product(self.at, self._scatter(outer)) + lam * x

    def solve(self, lam: float, start: torch.Tensor, tolerance: float = TOLERANCE
              ) -> tuple[torch.Tensor, int]:
        """The table for ``lam``, from ``start``; and the iterations taken."""
        return conjugate_gradient(lambda x: self.apply(x, lam), self.rhs, start,
                                  1.0 / (self.diagonal + lam), tolerance=tolerance,
                                  max_iterations=MAX_ITERATIONS)


def implicit_sweep(f, side: str, train, valid, lambdas, matrices: tuple):
    """Re-solve the implicit table behind ``side``'s centres (``f``: the refit's ``_Factors``).

    Returns the factors with the new table, centres and effective rows (the table rows kept), the
    best validation MSE and its ``lam`` (of ``lambdas``).
    """
    if side == "user":
        own, other, features, rows, centre, table = train.user, train.item, f.Q, f.P, f.Pc, f.Pt
    else:
        own, other, features, rows, centre, table = train.item, train.user, f.P, f.Q, f.Qc, f.Qt
    fixed = rows - centre
    target = train.rating - train.rest
    if f.bu is not None:
        target = target - f.bu[train.user] - f.bi[train.item]
    step = max(1, BLOCK_BYTES // (8 * max(1, fixed.shape[1])))
    for lo in range(0, own.shape[0], step):  # minus the table rows' share, in blocks
        target[lo:lo + step] -= torch.einsum("ij,ij->i", fixed[own[lo:lo + step]],
                                             features[other[lo:lo + step]])
    regression = ImplicitRegression(own, other, features, target, matrices)
    best, x = None, table
    for lam in lambdas:
        x, _ = regression.solve(float(lam), x)
        centres = _product(matrices[0], x)
        names = ("P", "Pc", "Pt") if side == "user" else ("Q", "Qc", "Qt")
        candidate = dataclasses.replace(f, **dict(zip(names, (fixed + centres, centres, x), strict=True)))
        mse = candidate.mse(valid)
        if best is None or mse < best[1]:
            best = (candidate, mse, float(lam))
    return best


__all__ = ["IMPLICIT_LAMBDAS", "ImplicitRegression", "implicit_matrices", "implicit_sweep"]
