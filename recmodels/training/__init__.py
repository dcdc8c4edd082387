"""Training: configuration, the one set-up, optimizers, the loop, run directories, the estimator.

Names are imported on first use, so reading the configuration (``TrainConfig``,
``DataConfig``: what the CLI's defaults come from) does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "OPTIMIZERS": "config", "RESUMABLE_FIELDS": "config", "TrainConfig": "config",
    "DataConfig": "setup", "TrainingSetup": "setup", "build_setup": "setup",
    "RatingModel": "estimator",
    "RowwiseAdagrad": "optim", "build_optimizers": "optim",
    "train_run": "pipeline",
    "EpochRecord": "trainer", "RatingTensors": "trainer", "TrainState": "trainer", "Trainer": "trainer",
    "predict_tensors": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
