"""Training: configuration, optimizers, the loop, run directories and the estimator."""

from __future__ import annotations

from .config import OPTIMIZERS, TrainConfig
from .estimator import RatingModel
from .optim import RowwiseAdagrad, build_optimizers
from .pipeline import prepare_data, train_run
from .trainer import EpochRecord, RatingTensors, Trainer, TrainState, predict_tensors

__all__ = [
    "OPTIMIZERS", "EpochRecord", "RatingModel", "RatingTensors", "RowwiseAdagrad", "TrainConfig",
    "TrainState", "Trainer", "build_optimizers", "predict_tensors", "prepare_data", "train_run",
]
