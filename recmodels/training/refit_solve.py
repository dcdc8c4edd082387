"""Batched normal equations and solves of the low-rank refit (:mod:`recmodels.training.refit`).

One side's regressions given the other (every user row given the items, or every item row given
the users) are many small ridge problems, one per own row: ``(G_r + penalty_r) x_r = b_r`` with
``G_r`` the sum over the row's ratings of ``x x^T`` (``x``: the partner's features and a 1 for the
bias; the partner's posterior covariance added for the variational sweeps) and ``b_r`` the sum of
``x`` times the rating's target. Building ``G_r`` rating by rating writes ``k * k`` values per
rating and costs far more than its arithmetic; here the ratings are grouped by own row once (a CSR
matrix: own row x partner) and every own row's ``G_r`` is one sparse-dense product with a table
of the partners' ``x x^T`` (upper triangle only), so each rating costs one pass over its
partner's table row. The solves are batched Cholesky factorizations, one call per block of rows
and ``lam``.

Memory stays bounded: own rows go in blocks of about :data:`BLOCK_BYTES` of normal equations,
and the partners' table in column chunks of about :data:`TABLE_BYTES` (rebuilt per block only
when it needs more than one chunk).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

# Working memory of one block of normal equations (rows x k x k, float64).
BLOCK_BYTES = 64 * 2**20
# Working memory of the partners' packed x x^T table (one column chunk of it): enough for the
# whole table at rank 32 at the notebook's scale (a chunked table is rebuilt for every block).
TABLE_BYTES = 512 * 2**20
# The validation rows' gathered partner rows, kept for a half-sweep if they take at most this.
GATHER_BYTES = 256 * 2**20
# Fewer rows than this per thread are not worth a thread.
_MIN_ROWS_PER_WORKER = 2048


@dataclass(frozen=True)
class RowGroups:
    """Ratings grouped by own row: their order, each own row's range in it, their partner rows.

    Attributes
    ----------
    order : torch.Tensor
        int64 ``(n,)``: the ratings sorted by own row (stable).
    indptr : torch.Tensor
        int64 ``(n_own + 1,)``: own row ``r``'s ratings are ``order[indptr[r]:indptr[r + 1]]``.
    partners : torch.Tensor
        int64 ``(n,)``: ``other[order]``.
    """

    order: torch.Tensor
    indptr: torch.Tensor
    partners: torch.Tensor

    @classmethod
    def of(cls, own: torch.Tensor, other: torch.Tensor, n_own: int) -> RowGroups:
        order = torch.argsort(own, stable=True)
        indptr = torch.zeros(n_own + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(own, minlength=n_own), 0)
        return cls(order, indptr, other[order].long())

    @property
    def n_own(self) -> int:
        return self.indptr.shape[0] - 1


def _csr(indptr: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, n_columns: int):
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is not
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(indptr, columns, values, size=(indptr.shape[0] - 1, n_columns),
                                       check_invariants=False)


class _PartnerTable:
    """Per partner row, the packed upper triangle of ``x x^T`` (plus its covariance), in chunks."""

    def __init__(self, x: torch.Tensor, cov: torch.Tensor | None, table_bytes: int, block_bytes: int):
        k = x.shape[1]
        self.x, self.cov, self.k = x, cov, k
        a, b = torch.triu_indices(k, k)
        self.packed = a * k + b  # (i, j), i <= j, in the flattened k x k
        position = torch.empty(k, k, dtype=torch.int64)
        position[a, b] = position[b, a] = torch.arange(a.shape[0])
        self.unpack = position.flatten()  # each (i, j)'s column in the packed table
        width = max(1, table_bytes // (8 * max(1, x.shape[0])))
        pairs = a.shape[0]
        self.chunks = [(lo, min(pairs, lo + width)) for lo in range(0, pairs, width)]
        self.step = max(1, block_bytes // (8 * k * k))
        self._whole = None
        if len(self.chunks) == 1:
            self._whole = self.columns(0, pairs)

    def columns(self, lo: int, hi: int) -> torch.Tensor:
        if self._whole is not None:
            return self._whole
        n, k = self.x.shape
        out = torch.empty(n, hi - lo, dtype=self.x.dtype)
        for start in range(0, n, self.step):
            x = self.x[start:start + self.step]
            outer = x.unsqueeze(2) * x.unsqueeze(1)
            if self.cov is not None:
                r = self.cov.shape[1]
                outer[:, :r, :r] += self.cov[start:start + self.step]
            out[start:start + self.step] = outer.view(-1, k * k).index_select(1, self.packed[lo:hi])
        return out


def normal_equations(groups: RowGroups, x: torch.Tensor, target: torch.Tensor,
                     cov_other: torch.Tensor | None = None, *, block_bytes: int | None = None,
                     table_bytes: int | None = None
                     ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor]]:
    """The own rows' normal equations, in blocks of rows.

    Parameters
    ----------
    groups : RowGroups
        The ratings grouped by own row.
    x : torch.Tensor
        float64 ``(n_other, k)``: the partners' regressors.
    target : torch.Tensor
        float64 ``(n,)``: each rating's target, in the ratings' own order.
    cov_other : torch.Tensor, optional
        float64 ``(n_other, r, r)``, ``r <= k``: the partners' posterior covariances of their
        first ``r`` regressors, added to ``x x^T`` (``E[x x^T]``).
    block_bytes, table_bytes : int, optional
        Working memory of a block of equations and of the partners' table (default
        :data:`BLOCK_BYTES`, :data:`TABLE_BYTES`).

    Yields
    ------
    start, stop : int
        The block's own rows.
    gram : torch.Tensor
        float64 ``(stop - start, k, k)``: the sum of ``E[x x^T]`` over each row's ratings (rows
        without ratings: zeros).
    rhs : torch.Tensor
        float64 ``(stop - start, k)``: the sum of ``x * target``.
    """
    k = x.shape[1]
    block_bytes = block_bytes or BLOCK_BYTES
    values = target[groups.order]
    ones = torch.ones_like(values)
    table = _PartnerTable(x, cov_other, table_bytes or TABLE_BYTES, block_bytes)
    step = max(1, block_bytes // (8 * k * k))
    n_own, indptr = groups.n_own, groups.indptr
    for start in range(0, n_own, step):
        stop = min(n_own, start + step)
        lo, hi = int(indptr[start]), int(indptr[stop])
        rows, partners = indptr[start:stop + 1] - lo, groups.partners[lo:hi]
        pattern = _csr(rows, partners, ones[lo:hi], x.shape[0])
        packed = torch.cat([pattern @ table.columns(c0, c1) for c0, c1 in table.chunks], 1)
        gram = packed.index_select(1, table.unpack).view(stop - start, k, k)
        rhs = _csr(rows, partners, values[lo:hi], x.shape[0]) @ x
        yield start, stop, gram, rhs


class ValidationErrors:
    """Validation errors as one side's rows change: row ``v``'s error is ``base[v] + x[other[v]] .
    solution[own[v]]`` (``x``: the partners' regressors, fixed).

    Parameters
    ----------
    own, other : torch.Tensor
        int64 ``(n,)``: each validation row's own row and partner row.
    x : torch.Tensor
        float64 ``(n_other, k)``.
    base : torch.Tensor
        float64 ``(n,)``: the rest of each row's error.

    The partners' ``x`` per validation row is gathered once, in blocks, where it takes at most
    :data:`GATHER_BYTES`; otherwise at every :meth:`mse`.
    """

    def __init__(self, own: torch.Tensor, other: torch.Tensor, x: torch.Tensor, base: torch.Tensor):
        self.own, self.other, self.x, self.base = own, other, x, base
        n, k = own.shape[0], x.shape[1]
        step = max(1, BLOCK_BYTES // (8 * k))
        self.blocks = [(lo, min(n, lo + step)) for lo in range(0, n, step)]
        gathered = 8 * n * k <= GATHER_BYTES
        self.partners = [x[other[lo:hi]] if gathered else None for lo, hi in self.blocks]

    def mse(self, solution: torch.Tensor) -> float:
        """The mean squared error with ``solution`` (float64 ``(n_own, k)``) as the own rows."""
        total = 0.0
        for (lo, hi), x in zip(self.blocks, self.partners, strict=True):
            x = self.x[self.other[lo:hi]] if x is None else x
            error = self.base[lo:hi] + torch.einsum("ij,ij->i", solution.index_select(0, self.own[lo:hi]), x)
            total += float(torch.dot(error, error))
        return total / max(1, self.own.shape[0])


def _in_parallel(work, n: int, workers: int | None) -> None:
    """``work(rows)`` over slices of ``range(n)`` in threads: a batched LAPACK call loops over its
    matrices on one core (the GIL is released meanwhile)."""
    workers = max(1, min(workers or torch.get_num_threads(), n // _MIN_ROWS_PER_WORKER))
    if workers == 1:
        work(slice(0, n))
        return
    bounds = [n * i // workers for i in range(workers + 1)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(work, [slice(bounds[i], bounds[i + 1]) for i in range(workers)]))


def ridge_solves(gram: torch.Tensor, rhs: torch.Tensor, penalties, *, workers: int | None = None
                 ) -> list[torch.Tensor]:
    """Solve ``(gram + diag(p)) x = rhs`` for a batch of rows, for every ``p`` in ``penalties``.

    Parameters
    ----------
    gram : torch.Tensor
        float64 ``(n, k, k)``, symmetric positive semi-definite; left as it came.
    rhs : torch.Tensor
        float64 ``(n, k)``.
    penalties : sequence of torch.Tensor
        float64 ``(n, k)`` each, > 0 (every system then positive definite).
    workers : int, optional
        Threads (default: :func:`torch.get_num_threads`).

    Returns
    -------
    list of torch.Tensor
        float64 ``(n, k)``, one per penalty. Batched Cholesky; rows it fails on (not numerically
        positive definite) are solved by LU, as :func:`torch.linalg.solve` would.
    """
    out = [torch.empty_like(rhs) for _ in penalties]

    def work(rows: slice) -> None:
        system, b = gram[rows], rhs[rows].unsqueeze(-1)
        diagonal = system.diagonal(dim1=1, dim2=2)
        saved = diagonal.clone()
        try:  # the penalty goes on the diagonal in place (no copy of the block), then comes off
            for x, penalty in zip(out, penalties, strict=True):
                torch.add(saved, penalty[rows], out=diagonal)
                chol, info = torch.linalg.cholesky_ex(system)
                y = torch.linalg.solve_triangular(chol, b, upper=False)
                x[rows] = torch.linalg.solve_triangular(chol.mT, y, upper=True).squeeze(-1)
                failed = info != 0
                if bool(failed.any()):
                    x[rows][failed] = torch.linalg.solve(system[failed], b[failed]).squeeze(-1)
        finally:
            diagonal.copy_(saved)

    _in_parallel(work, gram.shape[0], workers)
    return out


def ridge_inverse(gram: torch.Tensor, penalty: torch.Tensor, rank: int, *,
                  workers: int | None = None) -> torch.Tensor:
    """The leading ``rank x rank`` block of ``(gram + diag(penalty))^-1`` for a batch of rows.

    Parameters
    ----------
    gram : torch.Tensor
        float64 ``(n, k, k)``; left as it came.
    penalty : torch.Tensor
        float64 ``(n, k)``.
    rank : int
        ``<= k``.
    workers : int, optional
        Threads (default: :func:`torch.get_num_threads`).

    Returns
    -------
    torch.Tensor
        float64 ``(n, rank, rank)``.
    """
    out = torch.empty(gram.shape[0], rank, rank, dtype=gram.dtype)

    def work(rows: slice) -> None:
        system = gram[rows].clone()
        system.diagonal(dim1=1, dim2=2).add_(penalty[rows])
        chol, info = torch.linalg.cholesky_ex(system)
        inverse = torch.cholesky_inverse(chol)
        failed = info != 0
        if bool(failed.any()):
            inverse[failed] = torch.linalg.inv(system[failed])
        out[rows] = inverse[:, :rank, :rank]

    _in_parallel(work, gram.shape[0], workers)
    return out


def conjugate_gradient(apply, rhs: torch.Tensor, start: torch.Tensor, preconditioner, *,
                       tolerance: float, max_iterations: int) -> tuple[torch.Tensor, int]:
    """Solve ``apply(x) = rhs`` for a symmetric positive definite linear ``apply``, by conjugate
    gradients preconditioned with ``preconditioner``.

    Parameters
    ----------
    apply : callable
        ``x -> A x``, tensors shaped like ``rhs`` (a matrix of unknowns is one vector).
    rhs, start : torch.Tensor
        float64, the same shape: ``b`` and the first ``x``.
    preconditioner : callable
        ``r -> M^-1 r`` for a symmetric positive definite ``M`` close to ``A`` (tensors shaped like
        ``rhs``).
    tolerance : float
        Stop once ``||b - A x|| <= tolerance * ||b||``.
    max_iterations : int

    Returns
    -------
    x : torch.Tensor
    iterations : int
    """
    x = start.clone()
    residual = rhs - apply(x)
    bound = tolerance * float(torch.linalg.vector_norm(rhs))
    z = preconditioner(residual)
    direction, rz = z.clone(), float(torch.sum(residual * z))
    for iteration in range(max_iterations):
        if float(torch.linalg.vector_norm(residual)) <= bound or rz <= 0.0:
            return x, iteration
        image = apply(direction)
        alpha = rz / float(torch.sum(direction * image))
        x.add_(direction, alpha=alpha)
        residual.sub_(image, alpha=alpha)
        z = preconditioner(residual)
        rz, previous = float(torch.sum(residual * z)), rz
        direction = z + (rz / previous) * direction
    return x, max_iterations


__all__ = ["BLOCK_BYTES", "GATHER_BYTES", "TABLE_BYTES", "RowGroups", "ValidationErrors",
           "conjugate_gradient", "normal_equations", "ridge_inverse", "ridge_solves"]
