"""Hyper-parameter search (``recmodels tune``) with Optuna, the ``recmodels[tune]`` extra.

:func:`tune` reads the data once, trains each trial through the same
:func:`~recmodels.training.train_run` as ``recmodels train`` (one run directory per trial),
prunes trials by their per-epoch validation RMSE and copies the best run to ``OUT/best/``.
Optuna is imported only when :func:`tune` runs, and the names below when first used (a light
:mod:`.layout` names the directory's files). See ``docs/tuning.md``.
"""

from .. import _lazy

# name -> the module that defines it, imported on first use (PEP 562): ``recmodels tune --help``
# reads :mod:`.space` and :mod:`.layout` without loading the training pipeline
_EXPORTS = {
    **dict.fromkeys(["TuneResult", "format_table", "parse_kinds", "tune"], ".search"),
    **dict.fromkeys(["Param", "default_space", "parameter_names", "parse_space", "read_space"], ".space"),
}

__all__ = ["Param", "TuneResult", "default_space", "format_table", "parameter_names", "parse_kinds",
           "parse_space", "read_space", "tune"]

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
