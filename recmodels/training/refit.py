"""Low-rank refit of the GMF and bias tables after the SGD epochs (``TrainConfig.refit``).

Early-stopped SGD leaves the GMF product ``P diag(w) Q^T`` (``w``: the GMF part of the predict
layer) with a few strong directions and a tail of weak, noisy ones, and its rows short of the
ridge optimum. The refit holds everything else fixed (the MLP tower, the pretrained item part,
the global mean and the predict bias) and

1. takes the SVD of the GMF product and truncates it at the rank with the lowest validation
   MSE (the SGD model keeps its predictions exactly at full rank);
2. runs alternating ridge regressions (ALS) at that rank: every user's GMF row and bias, then
   every item's, each the exact minimiser of its squared error plus ``lam * ||row||^2`` given
   the other side. ``lam`` is picked from :data:`LAMBDAS` on the validation rows at every
   half-sweep, and the sweeps stop once one brings no better validation MSE. Steps 2 and 3 run
   per prior shape: the same ``lam`` for every row, and with implicit parts also ``lam`` growing
   with the row's training rows (:data:`IMPLICIT_COUNT_EXPONENTS`), a further shape's step 3 only
   where its ridge result beats every result so far;
3. from that ridge (MAP) result, runs mean-field variational Bayes sweeps: the same
   regressions, but each row's normal equations take ``E[x x^T] = x x^T + Cov(x)`` of the other
   side's rows, whose posterior covariance (``noise`` times the inverse of their own last
   normal equations, penalty included) comes from their last solve. Mean field: a row's bias
   is treated as independent of its GMF row, so their cross-covariance is left out. Rows whose
   partners are uncertain (rarely rated) are shrunk more: a cheap stand-in for the posterior
   mean a Gibbs sampler averages over. The noise variance is a share of the ridge result's
   validation MSE (:data:`NOISE_SHARES`; several are tried if given). The result is still one
   set of rows at the same rank, so the export is unchanged.

With the implicit signal (``ModelConfig.implicit``) the rows are the effective ones, re-solved
around their implicit parts as centres, and every ridge sweep of step 2 also re-solves the implicit
tables that make the centres, every row held (:mod:`recmodels.training.refit_implicit`: one ridge
regression over the whole table, by conjugate gradients; ``lam`` from :data:`IMPLICIT_LAMBDAS` on
validation); the variational sweeps hold the tables. Without that re-solve the tables stay as SGD
left them, fitted to rows the refit then moves: re-solving them lowered the best default model's
test RMSE by 0.004 on MovieLens and 0.009 on Goodreads (``docs/benchmarks.md``). The whole
chain also runs once with the parts dropped (the effective rows kept as the table rows, the
implicit tables zeroed), and validation picks (``RefitReport.implicit_kept``): on data without an
implicit signal the parts only fit noise.

The refit keeps the best validation MSE it saw, the SGD model included, so it never makes the
validation figure worse. It changes only parameter values (``user_gmf``, ``item_gmf``, the GMF
columns of ``predict.weight``, ``user_bias``, ``item_bias``), never the architecture, so the
exported graph and the scorer are the same. Measured gains: ``docs/models.md``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .refit_implicit import IMPLICIT_LAMBDAS, implicit_matrices, implicit_sweep, nearby_lambdas
from .refit_sides import (  # noqa: F401  (_covariances, _ridge_side: tests; _truncated: benchmarks)
    _centre,
    _covariances,
    _Factors,
    _item_covariances,
    _model_factors,
    _Prior,
    _ridge_side,
    _rows,
    _sweep_side,
    _truncated,
)

# Ridge weights tried at every half-sweep (per row, the same for every row: a Gaussian prior).
LAMBDAS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
MAX_SWEEPS = 4
# The priors' shapes the refit tries (``refit_low_rank(count_exponents=...)``), one chain each:
# ``lam`` the same for every row, and, where the rows have implicit parts as centres, also ``lam``
# growing as the square root of the row's training rows (its variational sweeps only where its
# ridge sweeps beat the first chain). With the parts, validation picks the second on MovieLens
# (NeuMF test RMSE 0.8226 -> 0.8159), the first on Goodreads; without them the first was the better
# at the notebook's scale (sixth session) and the second doubled the refit's time (docs/models.md).
COUNT_EXPONENTS = (0.0,)
IMPLICIT_COUNT_EXPONENTS = (0.0, 0.5)
# The variational sweeps' noise variances, as shares of the ridge result's validation MSE (the
# MLP part overfits the training rows, so their residuals understate the noise), and their cap.
# 0.7 was the best of 0.5 / 0.7 / 1.0 at both scales measured (docs/models.md); each more share
# costs as much again as the ridge sweeps.
NOISE_SHARES = (0.7,)
MAX_VARIATIONAL_SWEEPS = 3
_VARIATIONAL_BYTES = 2**30
# Ranks above this are truncated but not re-solved (the normal equations grow as rank ** 2).
MAX_SOLVE_RANK = 64
# Fewer validation rows than this are too few to choose a rank and lam on: no refit.
MIN_VALID_ROWS = 500
# A candidate must lower the best validation MSE by this share to replace it (not rounding noise).
_MIN_GAIN = 1e-5
REFIT_TENSORS = ("user_gmf.weight", "item_gmf.weight", "predict.weight", "user_bias.weight",
                 "item_bias.weight", "item_implicit.weight", "user_implicit.weight")


@dataclass(frozen=True)
class RefitReport:
    """What :func:`refit_low_rank` did (``metrics.json["refit"]``).

    Attributes
    ----------
    dim : int
        The GMF width.
    rank : int
        The rank kept (``dim`` when nothing was truncated).
    sweeps : int
        The ridge sweep whose result was kept, or that the kept variational sweeps started from,
        counted from 1 (0: the truncation alone, or nothing).
    lambdas : list of float
        The ridge weight chosen at every half-sweep up to the kept one (users, items, users,
        ...): each one's result is where the next starts from.
    valid_rmse_before, valid_rmse_after : float
        Validation RMSE of the SGD model and of the refit one (unclipped).
    changed : bool
        False when nothing beat the SGD model, which is then left as it was.
    seconds : float
    variational_sweeps : int
        The variational sweep whose result was kept (0: none; the ridge result was kept).
    noise_share : float or None
        Its noise variance as a share of the ridge result's validation MSE.
    implicit_kept : bool or None
        With implicit parts (``ModelConfig.implicit``): whether the kept result has them (the
        refit also runs without them and keeps them only if validation says so); None without
        them, or when only the chains with them ran.
    count_exponent : float or None
        The kept result's prior shape (``count_exponents``); None: no sweep's result kept.
    implicit_lambdas : list of float
        With implicit parts: the implicit tables' ridge weight chosen at every implicit
        half-sweep up to the kept result (one per side with a part per ridge sweep; empty: none).
    """

    dim: int
    rank: int
    sweeps: int
    lambdas: list
    valid_rmse_before: float
    valid_rmse_after: float
    changed: bool
    seconds: float
    variational_sweeps: int = 0  # reports written before the variational sweeps have neither
    noise_share: float | None = None
    implicit_kept: bool | None = None
    count_exponent: float | None = None
    implicit_lambdas: list = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RefitReport:
        return cls(**data)

    def describe(self) -> str:
        """One log line."""
        if not self.changed:
            return (f"refit: no gain over the SGD weights (valid rmse {self.valid_rmse_before:.4f}); "
                    f"kept them ({self.seconds:.1f} s)")
        variational = (f" + {self.variational_sweeps} variational (noise x{self.noise_share:g})"
                       if self.variational_sweeps else "")
        dropped = ", implicit parts dropped" if self.implicit_kept is False else ""
        if self.count_exponent:
            dropped += f", lam x rows^{self.count_exponent:g}"
        return (f"refit: GMF rank {self.rank} of {self.dim}, {self.sweeps} ridge{variational} sweep(s)"
                f"{dropped}, valid rmse {self.valid_rmse_before:.4f} -> {self.valid_rmse_after:.4f} "
                f"({self.seconds:.1f} s)")


def supports_refit(model: nn.Module) -> bool:
    """Whether ``model`` has the GMF tables and predict layer the refit works on."""
    return all(isinstance(getattr(model, name, None), nn.Embedding) for name in ("user_gmf", "item_gmf")) \
        and isinstance(getattr(model, "predict", None), nn.Linear)



def _variational_fits(n_users: int, n_items: int, rank: int, bias: bool, n_lambdas: int) -> bool:
    """Whether the variational sweeps' largest tensors fit in ``_VARIATIONAL_BYTES``: the
    covariances of both sides, one side's kept normal equations and its ridge solutions."""
    k, most = rank + int(bias), max(n_users, n_items)
    values = (n_users + n_items) * rank * rank + most * k * k + n_lambdas * most * k
    return 8 * values <= _VARIATIONAL_BYTES


@torch.no_grad()
def refit_low_rank(model: nn.Module, train, valid, *, batch_size: int = 65536,
                   lambdas=LAMBDAS, max_sweeps: int = MAX_SWEEPS, bias_scale: float = 1.0,
                   count_exponents=None, variational: bool = True,
                   noise_shares=NOISE_SHARES, max_variational_sweeps: int = MAX_VARIATIONAL_SWEEPS,
                   rank: int | None = None, try_without_implicit: bool = True,
                   implicit_lambdas=IMPLICIT_LAMBDAS,
                   log: Callable[[str], None] | None = None) -> RefitReport:
    """Refit ``model``'s GMF and bias tables in place (module docstring); never worse on ``valid``.

    Parameters
    ----------
    model : nn.Module
        A trained MF, NeuMF or hybrid (:func:`supports_refit`); evaluated in eval mode (no
        dropout), then left in the mode it came in.
    train, valid : RatingTensors
        The training rows (the ridge regressions) and the validation rows (rank and ``lam``).
    batch_size : int
        Rows per forward pass when computing the fixed part of the predictions.
    lambdas : sequence of float
        Ridge weights to choose from at every half-sweep.
    max_sweeps : int
        At most this many user + item ridge sweeps.
    bias_scale : float
        The bias term's share of ``lam`` (1: the same penalty as a GMF coefficient); > 0.
    count_exponents : sequence of float
        The priors' shapes, one chain of ridge sweeps each, then variational sweeps from that
        chain's result: for the first shape always, for a further one only where its ridge
        result beats every result so far (the best on validation is kept). A row's ``lam`` is scaled by
        ``(its training rows / the mean) ** count_exponent`` (0: the same ``lam`` for every row,
        a Gaussian prior; 0.5: as the SGD's L2 scales, ``TrainConfig.l2_frequency_exponent``).
        Default (None): :data:`IMPLICIT_COUNT_EXPONENTS` where the rows have implicit parts,
        else :data:`COUNT_EXPONENTS`.
    variational : bool
        After the ridge sweeps, the mean-field variational sweeps (step 3 of the module
        docstring). Skipped when their covariances would not fit in
        ``_VARIATIONAL_BYTES`` (1 GiB).
    noise_shares : sequence of float
        The noise variances the variational sweeps try, as shares of the ridge result's
        validation MSE; each starts from the ridge result, the best on validation is kept.
    max_variational_sweeps : int
        At most this many variational sweeps per noise variance.
    rank : int, optional
        Truncate at this rank instead of the one with the lowest validation MSE (at most the GMF
        width; for benchmarks and experiments).
    try_without_implicit : bool
        With implicit parts, also run the chains with the parts dropped (the rows kept, the
        implicit tables zeroed) and keep the parts only if validation says so. The
        :class:`~recmodels.training.Trainer` passes False once its implicit probe
        (:mod:`recmodels.training.implicit_probe`) has kept them.
    implicit_lambdas : sequence of float
        With implicit parts, every ridge sweep also re-solves the implicit tables behind the
        centres (:mod:`recmodels.training.refit_implicit`), ``lam`` chosen from these on
        validation at every such half-sweep. Empty: the tables are held as trained.
    log : callable, optional
        Called with a progress line (``"refit: ..."``) before the refit starts and after the
        truncation and every sweep (the :class:`~recmodels.training.Trainer` passes its log).

    Returns
    -------
    RefitReport
    """
    if not bias_scale > 0:
        raise ValueError("bias_scale must be > 0 (a row without training data needs a penalty); "
                         f"got {bias_scale!r}")
    start = time.perf_counter()
    say = log or (lambda line: None)
    say(f"refit: {len(train):,} training / {len(valid):,} validation rows; truncating the GMF product "
        f"(width {model.user_gmf.embedding_dim}), then up to {max_sweeps} ridge and "
        f"{max_variational_sweeps if variational else 0} variational sweep(s)")

    def progress(what: str, mse: float, lams=()) -> None:
        lam = f", lam {' / '.join(f'{x:g}' for x in lams)} (users / items)" if lams else ""
        say(f"refit: {what}, valid rmse {mse ** 0.5:.4f}{lam} ({time.perf_counter() - start:.1f} s)")

    was_training = model.training
    model.eval()
    d = model.user_gmf.embedding_dim
    va = _rows(model, valid, batch_size)
    bias = isinstance(getattr(model, "user_bias", None), nn.Embedding)
    sgd = _model_factors(model)
    if count_exponents is None:
        with_parts = sgd.Pc is not None or sgd.Qc is not None
        count_exponents = IMPLICIT_COUNT_EXPONENTS if with_parts else COUNT_EXPONENTS
    before = sgd.mse(va)
    best, best_mse = sgd, before

    def better(mse: float, than: float | None = None) -> bool:  # rounding noise is no gain
        return mse < (best_mse if than is None else than) * (1 - _MIN_GAIN)

    chosen, kept_sweeps, kept_vb, kept_share, kept_exponent, kept_implicit = [], 0, 0, None, None, []
    starts = [sgd]
    if (sgd.Pc is not None or sgd.Qc is not None) and try_without_implicit:
        # the same chains without the implicit parts (the rows kept, the parts dropped): on data
        # without an implicit signal the parts only fit noise, and validation says so
        starts.append(dataclasses.replace(sgd, Pc=None, Qc=None, Pt=None, Qt=None, drop_implicit=True))
    tr, groups, last_table_lam = None, {}, {}
    matrices = implicit_matrices(model) if implicit_lambdas else {}

    def ridge_chain(truncated: _Factors, truncated_mse: float, floor: float, prior: _Prior, label: str):
        """Ridge sweeps from ``truncated`` under ``prior``; every result that beats the best so far
        becomes it. Returns this chain's ridge result ``(factors, mse, lambdas, sweep)``: the last
        sweep that beat ``floor`` and itself, else the truncation."""
        nonlocal best, best_mse, chosen, kept_sweeps, kept_vb, kept_share, kept_exponent, kept_implicit
        ridge = (truncated, truncated_mse, [], 0, [])
        current, sweep_lams, table_lams = truncated, [], []
        # the rows of each side, then the implicit tables behind the centres (with parts)
        tables = [("table", side) for side in matrices if _centre(truncated, side) is not None]
        steps = ["user", "item", *tables]
        for sweep in range(1, max_sweeps + 1):
            sweep_start = floor
            for step in steps:
                if isinstance(step, tuple):
                    previous = last_table_lam.get(step[1])  # the last choice, in any chain
                    grid = implicit_lambdas if previous is None else nearby_lambdas(previous)
                    current, mse, lam = implicit_sweep(current, step[1], tr, va, grid, matrices[step[1]],
                                                       descending=previous is None, groups=groups)
                    last_table_lam[step[1]] = lam
                    table_lams.append(lam)
                else:
                    current, mse, lam, _ = _sweep_side(current, step, tr, va, lambdas, prior, groups=groups)
                    sweep_lams.append(lam)
                if better(mse, floor):
                    ridge, floor = (current, mse, list(sweep_lams), sweep, list(table_lams)), mse
                if better(mse):
                    best, best_mse = current, mse
                    chosen, kept_sweeps, kept_vb, kept_share = list(sweep_lams), sweep, 0, None
                    kept_exponent, kept_implicit = prior.count_exponent, list(table_lams)
            chosen_tables = (f", implicit table lam {' / '.join(f'{x:g}' for x in table_lams[-len(tables):])}"
                             if tables else "")
            progress(f"ridge sweep {sweep}{label}{chosen_tables}", mse, sweep_lams[-2:])
            if floor == sweep_start:
                break
        return ridge

    def variational_chain(ridge, prior: _Prior, label: str) -> None:
        """Variational sweeps from a ridge result under ``prior``, per noise share."""
        nonlocal best, best_mse, chosen, kept_sweeps, kept_vb, kept_share, kept_exponent, kept_implicit
        start_rows, ridge_mse, ridge_lams, ridge_sweep, ridge_tables = ridge
        item_lam = ridge_lams[1::2][-1] if ridge_lams[1::2] else lambdas[len(lambdas) // 2]
        for share in noise_shares:
            noise = share * ridge_mse
            current = start_rows
            covs = {"item": _item_covariances(current, tr, prior, item_lam, noise, groups)}
            chain_lams, chain_best = [], ridge_mse
            for sweep in range(1, max_variational_sweeps + 1):
                sweep_start = chain_best
                for side, other in (("user", "item"), ("item", "user")):
                    covs.pop(side, None)  # the old ones are not needed while the new are built
                    current, mse, lam, covs[side] = _sweep_side(current, side, tr, va, lambdas,
                                                                prior, covs[other], noise, groups)
                    chain_lams.append(lam)
                    chain_best = min(chain_best, mse)
                    if better(mse):
                        best, best_mse = current, mse
                        chosen, kept_vb, kept_share = ridge_lams + chain_lams, sweep, float(share)
                        kept_sweeps, kept_exponent = ridge_sweep, prior.count_exponent
                        kept_implicit = list(ridge_tables)
                progress(f"variational sweep {sweep} (noise x{share:g}){label}", mse, chain_lams[-2:])
                if not better(chain_best, sweep_start):
                    break

    forced_rank = rank
    for first in starts:
        label = " (implicit parts dropped)" if first.drop_implicit else ""
        truncated, rank, truncated_mse = _truncated(first, va, forced_rank)
        progress(f"rank {rank} of {d}{label}", truncated_mse)
        if better(truncated_mse):
            best, best_mse = truncated, truncated_mse
        # the first start's ridge results must also beat the SGD model to be a chain's ridge result
        floor = min(best_mse, truncated_mse) if first is sgd else truncated_mse
        if rank > MAX_SOLVE_RANK or max_sweeps <= 0:
            continue
        if tr is None:
            tr = _rows(model, train, batch_size)
        for n, exponent in enumerate(count_exponents):
            shape = f" (lam x rows^{exponent:g})" if exponent else ""
            prior, best_before = _Prior(bias_scale, exponent), best_mse
            ridge = ridge_chain(truncated, truncated_mse, floor, prior, label + shape)
            # a further shape earns its (costlier) variational sweeps only by a ridge result that
            # beats everything so far
            if n and not best_mse < best_before:
                continue
            if variational and max_variational_sweeps > 0 and _variational_fits(
                    sgd.P.shape[0], sgd.Q.shape[0], ridge[0].P.shape[1], bias, len(lambdas)):
                variational_chain(ridge, prior, label + shape)
    changed = best is not sgd
    if changed:
        _write(model, best, d)
    model.train(was_training)
    return RefitReport(dim=d, rank=best.P.shape[1] if changed else d, sweeps=kept_sweeps,
                       lambdas=chosen, valid_rmse_before=before ** 0.5,
                       valid_rmse_after=best_mse ** 0.5, changed=changed,
                       seconds=time.perf_counter() - start, variational_sweeps=kept_vb,
                       noise_share=kept_share, count_exponent=kept_exponent, implicit_lambdas=kept_implicit,
                       implicit_kept=None if len(starts) == 1 else not best.drop_implicit)


def _write(model: nn.Module, f: _Factors, d: int) -> None:
    """Store ``f`` in the model: rank ``k`` GMF rows padded with zeros, GMF weights 1 then 0.

    With implicit parts the tables get the rows minus their parts and the implicit tables get
    ``f``'s (so the model's implicit parts are ``f``'s centres); zeros where ``f`` has none.
    """
    k = f.P.shape[1]
    implicit_table = getattr(model, "implicit_table", lambda side: None)
    for side, table, values, centre, vectors in (("user", model.user_gmf.weight, f.P, f.Pc, f.Pt),
                                                 ("item", model.item_gmf.weight, f.Q, f.Qc, f.Qt)):
        table.zero_()
        table[:, :k] = (values if centre is None else values - centre).to(table.device, table.dtype)
        if implicit_table(side) is not None:
            weight = implicit_table(side).weight
            weight.zero_()
            if vectors is not None and not f.drop_implicit:
                weight[:, :k] = vectors.to(weight.device, weight.dtype)
    model.predict.weight[0, :d] = 0.0
    model.predict.weight[0, :k] = 1.0
    if f.bu is not None:
        for table, values in ((model.user_bias.weight, f.bu), (model.item_bias.weight, f.bi)):
            table[:, 0] = values.to(table.device, table.dtype)


__all__ = ["COUNT_EXPONENTS", "IMPLICIT_COUNT_EXPONENTS", "LAMBDAS", "MAX_SWEEPS", "MAX_VARIATIONAL_SWEEPS",
           "MIN_VALID_ROWS", "NOISE_SHARES", "REFIT_TENSORS", "RefitReport", "refit_low_rank",
           "supports_refit"]
