"""What a fit records between epochs: the history rows and the state ``last.pt`` holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class EpochRecord:
    """One row of the training history."""

    epoch: int
    train_mse: float
    train_rmse: float
    valid_mse: float | None
    valid_rmse: float | None
    seconds: float
    samples_per_s: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TrainState:
    """Where a fit stands between epochs (what ``last.pt`` holds)."""

    epoch: int = 0
    best: float = math.inf
    best_epoch: int = 0
    patience_left: int | None = None
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    threads: int | None = None
    """CPU threads chosen from the machine's load when the fit started without ``num_threads``:
    kept for the whole fit and by a resume, since torch's results depend on the thread count."""
    implicit_probe: dict | None = None
    """:class:`~recmodels.training.implicit_probe.ImplicitProbe` as a dict, once it ran."""


def format_record(record: EpochRecord, epochs: int, best: bool = False) -> str:
    """One printed line per epoch."""
    text = (f"epoch {record.epoch}/{epochs}  train_rmse {record.train_rmse:.4f}")
    if record.valid_rmse is not None:
        text += f"  valid_rmse {record.valid_rmse:.4f}"
    text += f"  {record.seconds:.1f}s  {record.samples_per_s:,.0f} samples/s"
    return text + ("  *" if best else "")
