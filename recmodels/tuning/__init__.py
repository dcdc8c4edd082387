"""Hyper-parameter search (``recmodels tune``) with Optuna, the ``recmodels[tune]`` extra.

:func:`tune` reads the data once, trains each trial through the same
:func:`~recmodels.training.train_run` as ``recmodels train`` (one run directory per trial),
prunes trials by their per-epoch validation RMSE and copies the best run to ``OUT/best/``.
Optuna is imported only when :func:`tune` runs. See ``docs/tuning.md``.
"""

from .search import TuneResult, format_table, parse_kinds, tune
from .space import Param, default_space, parameter_names, parse_space, read_space

__all__ = ["Param", "TuneResult", "default_space", "format_table", "parameter_names", "parse_kinds",
           "parse_space", "read_space", "tune"]
