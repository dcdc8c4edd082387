"""The pieces of the low-rank refit (:mod:`recmodels.training.refit`): the rows and their fixed
part, the factors, the truncation, and one side's ridge (or variational) regressions given the
other side."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .refit_solve import RowGroups, ValidationErrors, normal_equations, ridge_inverse, ridge_solves

# Working memory of one block of normal equations or outer products.
_BLOCK_BYTES = 64 * 2**20


@dataclass
class _Rows:
    """One split's rows on the CPU, with the fixed part of their predictions."""

    user: torch.Tensor
    item: torch.Tensor
    rating: torch.Tensor
    rest: torch.Tensor  # prediction minus the GMF and bias terms


@torch.no_grad()
def _fixed_part(model: nn.Module, user: torch.Tensor, item: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Each row's prediction minus its GMF (effective rows) and bias terms (float64, CPU)."""
    d = model.user_gmf.embedding_dim
    w = model.predict.weight[0, :d]
    bias = isinstance(getattr(model, "user_bias", None), nn.Embedding)
    out = []
    rows = getattr(model, "gmf_rows", lambda u, i: (model.user_gmf(u), model.item_gmf(i)))
    for lo in range(0, user.shape[0], batch_size):
        u, i = user[lo:lo + batch_size], item[lo:lo + batch_size]
        p, q = rows(u, i)
        rest = model(u, i) - (p * q) @ w
        if bias:
            rest = rest - model.user_bias(u)[:, 0] - model.item_bias(i)[:, 0]
        out.append(rest.double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _rows(model, data, batch_size: int) -> _Rows:
    return _Rows(data.user_index.cpu(), data.item_index.cpu(), data.rating.cpu().double(),
                 _fixed_part(model, data.user_index, data.item_index, batch_size))


@dataclass
class _Factors:
    """The GMF product as ``P Q^T`` (``w`` folded into ``P``) and the biases, float64.

    ``P`` and ``Q`` are the effective rows; ``Pc`` and ``Qc`` their implicit parts
    (:mod:`recmodels.models.implicit`; ``None``: none), ``A_user @ Pt`` and ``A_item @ Qt``: the
    ridge regressions of the rows hold them and shrink ``P - Pc`` (the table rows), not ``P``;
    :mod:`recmodels.training.refit_implicit` re-solves ``Pt`` / ``Qt``, the implicit tables in
    these coordinates (the model's ``item_implicit`` times ``w`` / ``user_implicit``, through the
    truncation's maps).
    """

    P: torch.Tensor
    Q: torch.Tensor
    bu: torch.Tensor | None
    bi: torch.Tensor | None
    Pc: torch.Tensor | None = None
    Qc: torch.Tensor | None = None
    Pt: torch.Tensor | None = None
    Qt: torch.Tensor | None = None
    drop_implicit: bool = False  # written with the model's implicit tables zeroed

    def moved(self, side: str, rows: torch.Tensor, bias: torch.Tensor | None) -> _Factors:
        """These factors with one side's effective rows (and biases) replaced."""
        if side == "user":
            return dataclasses.replace(self, P=rows, bu=bias)
        return dataclasses.replace(self, Q=rows, bi=bias)

    def mse(self, rows: _Rows) -> float:
        """Mean squared error over ``rows``, in blocks of rows (bounded memory)."""
        n = rows.user.shape[0]
        return sum(float(block.sum()) for block in self._squared_errors(rows)) / max(1, n)

    def squared_errors(self, rows: _Rows) -> torch.Tensor:
        """Every row's squared error (float64)."""
        return torch.cat(list(self._squared_errors(rows)) or [torch.zeros(0, dtype=torch.float64)])

    def _squared_errors(self, rows: _Rows):
        step = max(1, _BLOCK_BYTES // (8 * max(1, self.P.shape[1])))
        for lo in range(0, rows.user.shape[0], step):
            u, i = rows.user[lo:lo + step], rows.item[lo:lo + step]
            pred = rows.rest[lo:lo + step] + (self.P[u] * self.Q[i]).sum(1)
            if self.bu is not None:
                pred = pred + self.bu[u] + self.bi[i]
            yield (pred - rows.rating[lo:lo + step]).pow(2)


def _implicit_rows(model: nn.Module, side: str) -> torch.Tensor | None:
    """The implicit part of every ``side`` GMF row (float64, CPU), or None (no part)."""
    rows = model.implicit_rows(side) if hasattr(model, "implicit_rows") else None
    return None if rows is None else rows.detach().double().cpu()


def _model_factors(model: nn.Module) -> _Factors:
    """The model's GMF product and biases as :class:`_Factors`: the effective rows (``w``, the
    GMF part of the predict layer, folded into ``P``) and their implicit parts as centres."""
    d = model.user_gmf.embedding_dim
    w = model.predict.weight[0, :d].detach().double().cpu()
    bias = isinstance(getattr(model, "user_bias", None), nn.Embedding)
    centres = [_implicit_rows(model, side) for side in ("user", "item")]
    tables = [None if centre is None else model.implicit_table(side).weight.detach().double().cpu()
              for side, centre in zip(("user", "item"), centres, strict=True)]
    if centres[0] is not None:  # w scales the user rows, their parts and so the vectors behind them
        centres[0], tables[0] = centres[0] * w, tables[0] * w
    f = _Factors(model.user_gmf.weight.detach().double().cpu() * w,
                 model.item_gmf.weight.detach().double().cpu(),
                 model.user_bias.weight[:, 0].detach().double().cpu() if bias else None,
                 model.item_bias.weight[:, 0].detach().double().cpu() if bias else None,
                 *centres, *tables)
    for name, centre in zip(("P", "Q"), centres, strict=True):
        if centre is not None:  # the effective rows
            setattr(f, name, getattr(f, name) + centre)
    return f


def _truncated(f: _Factors, valid: _Rows, rank: int | None = None) -> tuple[_Factors, int, float]:
    """The SVD truncation of ``P Q^T`` with the lowest validation MSE (or at ``rank``), its rank
    and MSE."""
    qp, rp = torch.linalg.qr(f.P)
    qq, rq = torch.linalg.qr(f.Q)
    u, s, vh = torch.linalg.svd(rp @ rq.T, full_matrices=False)
    # P Q^T = left diag(s) right^T, left = P map_p and right = Q map_q (pinv: P or Q may lack full
    # rank; their null directions carry no product)
    map_p, map_q = torch.linalg.pinv(rp) @ u, torch.linalg.pinv(rq) @ vh.T
    left, right = f.P @ map_p, f.Q @ map_q
    # Validation errors at every rank at once: cumulative sums over the directions.
    errors = torch.zeros(s.shape[0], dtype=torch.float64)
    step = max(1, _BLOCK_BYTES // (8 * s.shape[0]))
    for lo in range(0, valid.user.shape[0], step):
        u, i = valid.user[lo:lo + step], valid.item[lo:lo + step]
        base = valid.rest[lo:lo + step] - valid.rating[lo:lo + step]
        if f.bu is not None:
            base = base + f.bu[u] + f.bi[i]
        errors += (base.unsqueeze(1) + (left[u] * right[i] * s).cumsum(1)).pow(2).sum(0)
    errors /= max(1, valid.user.shape[0])
    rank = int(torch.argmin(errors)) + 1 if rank is None else min(rank, s.shape[0])
    root = s[:rank].sqrt()
    map_p, map_q = map_p[:, :rank] * root, map_q[:, :rank] * root
    def mapped(x, m):
        return None if x is None else x @ m

    truncated = _Factors(left[:, :rank] * root, right[:, :rank] * root, f.bu, f.bi,
                         mapped(f.Pc, map_p), mapped(f.Qc, map_q), mapped(f.Pt, map_p), mapped(f.Qt, map_q),
                         f.drop_implicit)
    return truncated, rank, float(errors[rank - 1])


@dataclass(frozen=True)
class _Prior:
    """The ridge penalty's shape: row ``r`` pays ``lam * (n_r / mean n) ** count_exponent`` times
    ``||coefficients||^2 + bias_scale * bias^2`` (``n_r``: its training rows)."""

    bias_scale: float = 1.0
    count_exponent: float = 0.0


def _ridge_side(own: torch.Tensor, other: torch.Tensor, n_own: int, features: torch.Tensor,
                target: torch.Tensor, bias: bool, lambdas, prior: _Prior,
                cov_other: torch.Tensor | None = None, keep: bool = False,
                groups: RowGroups | None = None):
    """Per own row, the ridge solutions ``[coefficients, bias]`` for every ``lam`` in ``lambdas``.

    Row ``r`` of the training data contributes ``x = [features[other[r]], 1]`` and
    ``target[r]`` to the normal equations of ``own[r]``, and with ``cov_other`` (the other side's
    posterior covariances) ``E[x x^T]`` instead of ``x x^T``; built and solved in batches
    (:mod:`recmodels.training.refit_solve`), blocks of own rows keep memory bounded. Returns the
    solutions and, with ``keep``, the blocks ``(start, stop, gram, penalty)`` (``penalty`` as
    ``(diagonal, per-row scale)``, not expanded per row). ``groups``: ``own`` and ``other`` grouped
    by own row, if already done.
    """
    x = torch.cat([features, features.new_ones(features.shape[0], 1)], 1) if bias else features
    k = x.shape[1]
    diagonal = torch.ones(k, dtype=torch.float64)
    if bias:
        diagonal[-1] = prior.bias_scale
    row_scale = torch.ones(n_own, dtype=torch.float64)
    if prior.count_exponent:
        counts = torch.bincount(own, minlength=n_own).double()
        mean = counts[counts > 0].mean()
        row_scale = (counts.clamp(min=1) / mean) ** prior.count_exponent  # empty rows: as 1 row
    out = [torch.zeros(n_own, k, dtype=torch.float64) for _ in lambdas]
    kept = []
    groups = groups or RowGroups.of(own, other, n_own)
    for start, stop, gram, rhs in normal_equations(groups, x, target, cov_other):
        scale = row_scale[start:stop, None] * diagonal
        if lambdas:
            solved = ridge_solves(gram, rhs, [lam * scale for lam in lambdas])
            for sol, block in zip(out, solved, strict=True):
                sol[start:stop] = block
        if keep:
            kept.append((start, stop, gram, (diagonal, row_scale[start:stop])))
    return out, kept


def _covariances(blocks, n_own: int, rank: int, lam: float, noise: float) -> torch.Tensor:
    """Posterior covariances of the rows' coefficients, ``noise * (gram + lam * penalty)^-1``."""
    cov = torch.zeros(n_own, rank, rank, dtype=torch.float64)
    for start, stop, gram, (diagonal, row_scale) in blocks:
        cov[start:stop] = noise * ridge_inverse(gram, lam * (row_scale[:, None] * diagonal), rank)
    return cov


def _side_problem(f: _Factors, side: str, train: _Rows) -> tuple:
    """``(own, other, n_own, features, target, bias)``: one side's regressions given the other.

    With an implicit part (the side's centre) the unknowns are the rows minus their centre: the
    target loses the centre's share of each prediction.
    """
    bias = f.bu is not None
    if side == "user":
        own, other, features, n_own, centre = train.user, train.item, f.Q, f.P.shape[0], f.Pc
        other_bias = f.bi[train.item] if bias else 0.0
    else:
        own, other, features, n_own, centre = train.item, train.user, f.P, f.Q.shape[0], f.Qc
        other_bias = f.bu[train.user] if bias else 0.0
    target = train.rating - train.rest - other_bias
    if centre is not None:
        target = target - _row_dots(centre, own, features, other)
    return own, other, n_own, features, target, bias


def _row_dots(a: torch.Tensor, rows_a: torch.Tensor, b: torch.Tensor, rows_b: torch.Tensor) -> torch.Tensor:
    """``(a[rows_a] * b[rows_b]).sum(1)``, in blocks of rows (bounded memory)."""
    out = torch.empty(rows_a.shape[0], dtype=a.dtype)
    step = max(1, _BLOCK_BYTES // (8 * max(1, a.shape[1])))
    for lo in range(0, rows_a.shape[0], step):
        out[lo:lo + step] = torch.einsum("ij,ij->i", a[rows_a[lo:lo + step]], b[rows_b[lo:lo + step]])
    return out


def _centre(f: _Factors, side: str) -> torch.Tensor | None:
    return f.Pc if side == "user" else f.Qc


def _groups(cache: dict | None, side, own, other, n_own: int) -> RowGroups:
    """One side's rows grouped by own row, kept in ``cache`` under ``side`` (the same every
    sweep)."""
    if cache is None:
        return RowGroups.of(own, other, n_own)
    if side not in cache:
        cache[side] = RowGroups.of(own, other, n_own)
    return cache[side]


def _side_errors(f: _Factors, side: str, valid: _Rows, groups: dict | None = None) -> ValidationErrors:
    """The validation errors as one side's rows change and the other side's stay (the rows in
    own-row order, cached in ``groups``: cheaper gathers)."""
    own, other, features, other_bias = ((valid.user, valid.item, f.Q, f.bi) if side == "user"
                                        else (valid.item, valid.user, f.P, f.bu))
    n_own = (f.P if side == "user" else f.Q).shape[0]
    order = _groups(groups, ("valid", side), own, other, n_own).order
    own, other = own[order], other[order]
    base = valid.rest[order] - valid.rating[order]
    if other_bias is None:
        return ValidationErrors(own, other, features, base)
    x = torch.cat([features, features.new_ones(features.shape[0], 1)], 1)
    return ValidationErrors(own, other, x, base + other_bias[other])


def _sweep_side(f: _Factors, side: str, train: _Rows, valid: _Rows, lambdas, prior: _Prior,
                cov_other: torch.Tensor | None = None, noise: float | None = None,
                groups: dict | None = None):
    """Re-solve one side's rows; the best ``lam`` on the validation rows, its MSE, and (with
    ``noise``, the variational refit) the rows' posterior covariances at that ``lam``.
    ``groups``: a cache of each side's training rows grouped by own row."""
    own, other, n_own, features, target, bias = problem = _side_problem(f, side, train)
    rank = features.shape[1]
    solutions, blocks = _ridge_side(*problem, lambdas, prior, cov_other, keep=noise is not None,
                                    groups=_groups(groups, side, own, other, n_own))
    errors = _side_errors(f, side, valid, groups)
    centre = _centre(f, side)
    best = None
    for lam, sol in zip(lambdas, solutions, strict=True):
        if centre is not None:  # the solutions are the rows minus their centre
            sol[:, :rank] += centre
        mse = errors.mse(sol)
        if best is None or mse < best[1]:
            best = (sol, mse, float(lam))
    sol, mse, lam = best
    rows, row_bias = sol[:, :rank], (sol[:, rank] if bias else None)
    candidate = f.moved(side, rows, row_bias)
    cov = None if noise is None else _covariances(blocks, n_own, rank, lam, noise)
    return candidate, mse, lam, cov


def _item_covariances(f: _Factors, train: _Rows, prior: _Prior, lam: float, noise: float,
                      groups: dict | None = None) -> torch.Tensor:
    """The item rows' ridge posterior covariances given the users, without moving the items."""
    own, other, n_own, *_ = problem = _side_problem(f, "item", train)
    _, blocks = _ridge_side(*problem, (), prior, keep=True,
                            groups=_groups(groups, "item", own, other, n_own))
    return _covariances(blocks, f.Q.shape[0], f.P.shape[1], lam, noise)
