"""Whether the implicit parts pay on this data, asked of the validation rows after the first epoch.

Where *which* items a user rated says nothing about the ratings (planted data draws the rated
pairs independently of the ratings), the implicit parts (``ModelConfig.implicit``) only fit
noise, and the GMF rows trained beside them stay worse: the refit can drop the parts at the end
but not undo what the rows learnt with them (planted small MF 0.6504 test RMSE against 0.6475
without the part). So after :data:`IMPLICIT_PROBE_EPOCH` epochs the trainer asks the validation
rows, with the refit's own regressions (:mod:`recmodels.training.refit`): from the SVD truncation
of the GMF product, one ridge sweep (every user's row, then every item's, ``lam`` picked on the
validation rows) that shrinks the rows towards their implicit parts, and one that shrinks them
towards zero (the parts folded into the rows). Unless the parts as centres lower the validation
MSE by at least :data:`IMPLICIT_PROBE_Z` standard errors (paired, row by row) they are dropped
for good and training starts again from the initial weights without them (the implicit tables
zeroed, ``N`` emptied: :func:`remove_parts`). The first epoch is trained again (it does not
count), and what the rows learnt beside the parts is gone; folding the parts into the rows kept it
(the notebook's planted scale: 0.6750 validation RMSE at the end against 0.6737 without the
part). The probe's result is ``metrics.json["implicit_probe"]``.

Measured: docs/models.md ("The probe after the first epoch").
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .refit import LAMBDAS, MIN_VALID_ROWS
from .refit_sides import _model_factors, _Prior, _rows, _sweep_side, _truncated

# The epoch after which the probe runs: the first. Its verdicts after epochs 1, 2 and 3 were the
# same on every set measured (planted small and the notebook's scale, MovieLens, Goodreads; MF and
# NeuMF), and the sooner parts that only fit noise go, the less the rows learn beside them.
IMPLICIT_PROBE_EPOCH = 1
# The parts stay only if they lower the validation MSE by this many standard errors of the mean
# per-row difference (a paired test): at the notebook's planted scale they tied (0.7172 with,
# 0.7173 without), and a tie is no reason to keep a term that cost 0.005 there by the end.
IMPLICIT_PROBE_Z = 2.0


@dataclass(frozen=True)
class ImplicitProbe:
    """What :func:`probe_implicit` measured (``metrics.json["implicit_probe"]``).

    Attributes
    ----------
    epoch : int
        The epoch after which it ran.
    rank : int
        The rank of the GMF product's truncation the sweeps started from.
    valid_rmse_with, valid_rmse_without : float
        Validation RMSE after one ridge sweep with the implicit parts as the rows' centres, and
        with the parts folded into the rows.
    z : float
        The mean per-row decrease of the squared validation error with the parts, in standard
        errors (positive: lower with them).
    seconds : float
    """

    epoch: int
    rank: int
    valid_rmse_with: float
    valid_rmse_without: float
    z: float
    seconds: float

    @property
    def kept(self) -> bool:
        """Whether the parts stay: their gain is at least :data:`IMPLICIT_PROBE_Z` standard errors."""
        return self.z >= IMPLICIT_PROBE_Z

    def to_dict(self) -> dict:
        return {**asdict(self), "kept": self.kept}

    def describe(self) -> str:
        """One log line."""
        verdict = "kept" if self.kept else "dropped"
        return (f"implicit parts after epoch {self.epoch}: valid rmse {self.valid_rmse_with:.4f} with, "
                f"{self.valid_rmse_without:.4f} without, z {self.z:.1f} (one ridge sweep at rank "
                f"{self.rank}); {verdict} ({self.seconds:.1f} s)")


def probe_due(model: nn.Module, epoch: int, valid) -> bool:
    """Whether the probe runs after ``epoch``: a model with implicit parts and GMF tables, and
    enough validation rows to choose on (the refit's :data:`MIN_VALID_ROWS`)."""
    return (epoch == IMPLICIT_PROBE_EPOCH and bool(getattr(model, "implicit_tables", None))
            and isinstance(getattr(model, "user_gmf", None), nn.Embedding)
            and valid is not None and len(valid) >= MIN_VALID_ROWS)


@torch.no_grad()
def probe_implicit(model: nn.Module, train, valid, epoch: int, batch_size: int = 65536) -> ImplicitProbe:
    """Compare one ridge sweep of the GMF rows around their implicit parts with one around zero.

    Parameters
    ----------
    model : nn.Module
        A model with implicit parts and GMF tables (:func:`probe_due`); evaluated in eval mode,
        left in the mode it came in; nothing in it changes.
    train, valid : RatingTensors
        The training rows (the regressions) and the validation rows (``lam``, the verdict).
    epoch : int
        The epoch just trained (recorded).
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    ImplicitProbe
    """
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        factors = _model_factors(model)
        va, tr = _rows(model, valid, batch_size), _rows(model, train, batch_size)
    finally:
        model.train(was_training)
    truncated, rank, _ = _truncated(factors, va)
    groups: dict = {}
    prior = _Prior()
    without = dataclasses.replace(truncated, Pc=None, Qc=None, Pt=None, Qt=None)
    firsts, sides = [truncated, without], ("user", "item")
    if truncated.Pc is None:  # no user part: the users' half-sweep is the same in both
        shared, _, _, _ = _sweep_side(truncated, "user", tr, va, LAMBDAS, prior, groups=groups)
        firsts, sides = [shared, dataclasses.replace(shared, Qc=None)], ("item",)
    errors = []
    for current in firsts:
        for side in sides:
            current, _, _, _ = _sweep_side(current, side, tr, va, LAMBDAS, prior, groups=groups)
        errors.append(current.squared_errors(va))
    gain = errors[1] - errors[0]  # per validation row: how much lower the error is with the parts
    spread = float(gain.std()) / max(1, gain.shape[0]) ** 0.5
    z = float(gain.mean()) / spread if spread > 0 else 0.0
    return ImplicitProbe(epoch=epoch, rank=rank, valid_rmse_with=float(errors[0].mean()) ** 0.5,
                         valid_rmse_without=float(errors[1].mean()) ** 0.5, z=z,
                         seconds=time.perf_counter() - start)


def remove_parts(model: nn.Module) -> None:
    """Zero ``model``'s implicit tables and empty its ``N``: a model without implicit parts."""
    with torch.no_grad():
        for table in model.implicit_tables:
            table.weight.zero_()
    none = torch.zeros(0, dtype=torch.int64)
    model.set_rated(none, none)


__all__ = ["IMPLICIT_PROBE_EPOCH", "IMPLICIT_PROBE_Z", "ImplicitProbe", "probe_due", "probe_implicit",
           "remove_parts"]
