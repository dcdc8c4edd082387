"""Training: configuration, the one set-up, optimizers, the loop, run directories, the estimator.

Names are imported on first use, so reading the configuration (``TrainConfig``,
``DataConfig``: what the CLI's defaults come from) does not import torch.
"""

from __future__ import annotations

from .. import _lazy

_EXPORTS = {
    "OPTIMIZERS": ".config", "RESUMABLE_FIELDS": ".config", "TrainConfig": ".config",
    "DataConfig": ".setup", "TrainingSetup": ".setup", "build_setup": ".setup",
    "RatingModel": ".estimator",
    "RowwiseAdagrad": ".optim", "build_optimizers": ".optim",
    "train_run": ".pipeline",
    "EpochRecord": ".state", "RatingTensors": ".trainer", "TrainState": ".state", "Trainer": ".trainer",
    "predict_tensors": ".trainer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
