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
training rows, in blocks (bounded memory), or one batched product with ``H`` kept per own row where
that is cheaper; the preconditioner is the operator's ``k x k`` diagonal blocks, one per table row.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import torch
from torch import nn

from .refit_sides import _centre, _groups, _row_dots
from .refit_solve import BLOCK_BYTES, GATHER_BYTES, RowGroups, _csr, conjugate_gradient, normal_equations

# The implicit tables' ridge weights, chosen on validation at every implicit half-sweep (each solve
# starts from the last one's result). Measured picks: 16 and 64 on MovieLens and Goodreads (the
# grid 16-1024 first: 1024 never won).
IMPLICIT_LAMBDAS = (256.0, 64.0, 16.0, 4.0)
# The conjugate gradients stop at this residual, relative to the right-hand side's, or after
# MAX_ITERATIONS: the validation MSEs ``lam`` is chosen on, and the refit's results on MovieLens and
# Goodreads, agree to 4 decimals with 1e-8 (which takes 1.4x the iterations of 1e-4 there).
TOLERANCE = 1e-4
MAX_ITERATIONS = 200
# The preconditioner's k x k blocks, one per table row, if they fit in this; else its diagonal.
PRECONDITIONER_BYTES = 512 * 2**20


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
            out[side] = (model.implicit_matrix(side).to(torch.float64),
                         model.implicit_matrix(side, transpose=True).to(torch.float64))
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
    keep_grams : bool, optional
        Keep ``H`` as one ``k x k`` matrix per own row (each pass then costs ``n_own * k * k``)
        instead of passing over the ratings (about ``3 * n * k``); default: whichever costs less,
        if the matrices fit in :data:`PRECONDITIONER_BYTES`.
    groups : RowGroups, optional
        ``own`` and ``other`` grouped by own row, if already done (the refit's rows' half-sweep
        of that side grouped them the same way).

    The training rows are grouped by own row once; ``H z`` is then either one batched product
    with the kept ``H`` or, per block of own rows, one sparse product ``W @ F`` (``W``: the block's
    ratings, each valued ``F[other] . z[own]``). The preconditioner is the operator's ``k x k``
    diagonal blocks, one per table row (its diagonal where they would not fit in
    :data:`PRECONDITIONER_BYTES`).
    """

    def __init__(self, own: torch.Tensor, other: torch.Tensor, features: torch.Tensor,
                 target: torch.Tensor, matrices: tuple, keep_grams: bool | None = None,
                 groups: RowGroups | None = None):
        self.features = features
        self.a, self.at = matrices
        n_own, k = self.a.shape[0], features.shape[1]
        self.groups = groups = groups or RowGroups.of(own, other, n_own)
        self.counts = groups.indptr[1:] - groups.indptr[:-1]
        # blocks of whole own rows, about BLOCK_BYTES of gathered partner rows each
        step = max(1, BLOCK_BYTES // (8 * k))
        bounds = torch.searchsorted(groups.indptr, torch.arange(0, len(own), step), right=True) - 1
        cuts = sorted({0, n_own, *bounds.clamp(min=0).tolist()})
        self.blocks = list(zip(cuts[:-1], cuts[1:], strict=True))
        # H kept as one k x k matrix per own row where that is cheaper per pass than the ratings
        # (about 3 passes of k values per rating) and fits
        keep = n_own * k * k <= 3 * len(own) * k and 8 * n_own * k * k <= PRECONDITIONER_BYTES \
            if keep_grams is None else keep_grams
        self.grams = torch.empty(n_own, k, k, dtype=torch.float64) if keep else None
        # the ratings' partner rows, for the passes over the ratings (gathered at every pass if large)
        gathered = not keep and 8 * len(own) * k <= GATHER_BYTES
        self.gathered = [features[self._partners(r0, r1)] if gathered else None for r0, r1 in self.blocks]
        # one pass of the own rows' normal equations: b, and the preconditioner's blocks, per table
        # row v: sum over own rows i of A[i, v] ** 2 H_i (the operator's diagonal k x k blocks)
        n_table = self.a.shape[1]
        self.blocked = 8 * n_table * k * k <= PRECONDITIONER_BYTES
        self.blocks_of_table = torch.zeros((n_table, k, k) if self.blocked else (n_table, k),
                                           dtype=torch.float64)
        rhs = torch.empty(n_own, k, dtype=torch.float64)
        crow, col, squared = self.a.crow_indices(), self.a.col_indices(), self.a.values() ** 2
        for start, stop, gram, b in normal_equations(groups, features, target):
            rhs[start:stop] = b
            if self.grams is not None:
                self.grams[start:stop] = gram
            per_row = gram if self.blocked else gram.diagonal(dim1=1, dim2=2)
            lo, hi = int(crow[start]), int(crow[stop])
            rows = torch.repeat_interleave(torch.arange(stop - start),
                                           crow[start + 1:stop + 1] - crow[start:stop], output_size=hi - lo)
            step = max(1, BLOCK_BYTES // (8 * per_row[0].numel()))
            for c in range(lo, hi, step):
                weights = squared[c:min(hi, c + step)].view(-1, *[1] * (per_row.dim() - 1))
                self.blocks_of_table.index_add_(0, col[c:min(hi, c + step)],
                                                weights * per_row[rows[c - lo:min(hi, c + step) - lo]])
        self.rhs = _product(self.at, rhs)

    def preconditioner(self, lam: float):
        """``r -> M^-1 r``, ``M``: the operator's diagonal blocks (or its diagonal) plus ``lam``."""
        if not self.blocked:
            inverse = 1.0 / (self.blocks_of_table + lam)
            return lambda r: inverse * r
        system = self.blocks_of_table.clone()
        system.diagonal(dim1=1, dim2=2).add_(lam)
        inverse = torch.cholesky_inverse(torch.linalg.cholesky(system))  # applied by bmm: faster
        return lambda r: torch.bmm(inverse, r.unsqueeze(-1)).squeeze(-1)

    def _partners(self, r0: int, r1: int) -> torch.Tensor:
        indptr = self.groups.indptr
        return self.groups.partners[int(indptr[r0]):int(indptr[r1])]

    def _indptr(self, r0: int, r1: int) -> torch.Tensor:
        return self.groups.indptr[r0:r1 + 1] - self.groups.indptr[r0]

    def apply(self, x: torch.Tensor, lam: float) -> torch.Tensor:
        """``(A^T H A + lam I) x``."""
        centres = _product(self.a, x)
        if self.grams is not None:
            products = torch.bmm(self.grams, centres.unsqueeze(-1)).squeeze(-1)
        else:  # per block of own rows: its ratings valued F[other] . z[own], times F
            products = torch.empty_like(centres)
            indptr = self.groups.indptr
            for (r0, r1), f in zip(self.blocks, self.gathered, strict=True):
                lo, hi = int(indptr[r0]), int(indptr[r1])
                f = self.features[self._partners(r0, r1)] if f is None else f
                z = torch.repeat_interleave(centres[r0:r1], self.counts[r0:r1], dim=0, output_size=hi - lo)
                dots = torch.bmm(f.unsqueeze(1), z.unsqueeze(2)).view(-1)
                matrix = _csr(self._indptr(r0, r1), self._partners(r0, r1), dots, self.features.shape[0])
                products[r0:r1] = matrix @ self.features
        return _product(self.at, products) + lam * x

    def solve(self, lam: float, start: torch.Tensor, tolerance: float = TOLERANCE
              ) -> tuple[torch.Tensor, int]:
        """The table for ``lam``, from ``start``; and the iterations taken."""
        return conjugate_gradient(lambda x: self.apply(x, lam), self.rhs, start,
                                  self.preconditioner(lam), tolerance=tolerance,
                                  max_iterations=MAX_ITERATIONS)


def nearby_lambdas(previous: float) -> tuple:
    """The ``lam`` grid of an implicit half-sweep after the first: the last choice first, then
    half and twice it."""
    return previous, previous / 2, previous * 2


def implicit_sweep(f, side: str, train, valid, lambdas, matrices: tuple, descending: bool = False,
                   groups: dict | None = None):
    """Re-solve the implicit table behind ``side``'s centres (``f``: the refit's ``_Factors``).

    ``lambdas`` are tried in their order, each solve from the solution of the nearest one solved
    so far (the table for the first); with ``descending`` (a grid from the largest ``lam`` down)
    the search stops at the first ``lam`` that does worse on validation than the one before.
    Returns the factors with the new table, centres and effective rows (the table rows kept), the
    best validation MSE and its ``lam``. ``groups``: the refit's cache of training rows grouped
    by own row (:func:`~recmodels.training.refit_sides._groups`).
    """
    if side == "user":
        own, other, features, rows, table, names = train.user, train.item, f.Q, f.P, f.Pt, ("P", "Pc", "Pt")
    else:
        own, other, features, rows, table, names = train.item, train.user, f.P, f.Q, f.Qt, ("Q", "Qc", "Qt")
    fixed = rows - _centre(f, side)  # the table rows, held
    target = train.rating - train.rest - _row_dots(fixed, own, features, other)
    if f.bu is not None:
        target = target - f.bu[train.user] - f.bi[train.item]
    grouped = _groups(groups, side, own, other, rows.shape[0])
    regression = ImplicitRegression(own, other, features, target, matrices, groups=grouped)
    best, solved = None, {}
    for lam in lambdas:
        # from the solution of the nearest lam solved so far (the table for the first)
        near = min(solved, key=lambda done: abs(math.log(done / lam)), default=None)
        x, _ = regression.solve(float(lam), table if near is None else solved[near])
        solved[lam] = x
        centres = _product(matrices[0], x)
        candidate = dataclasses.replace(f, **dict(zip(names, (fixed + centres, centres, x), strict=True)))
        mse = candidate.mse(valid)
        if best is None or mse < best[1]:
            best = (candidate, mse, float(lam))
        elif descending:  # past the best of a descending grid (the smaller lam cost the most)
            break
    return best


__all__ = ["IMPLICIT_LAMBDAS", "ImplicitRegression", "implicit_matrices", "implicit_sweep", "nearby_lambdas"]
