"""recmodels: rating-prediction recommenders trained in PyTorch, exported to ONNX,
scored in bulk with onnxruntime.

The main names are offered here and imported on first use (PEP 562), so ``import recmodels``
imports nothing heavy, and the scoring names never import torch:

>>> import recmodels
>>> recmodels.score("bundles/neumf", "pairs.parquet", "scores.parquet")      # doctest: +SKIP
>>> recmodels.Recommender("bundles/neumf").recommend_frame(k=10)            # doctest: +SKIP
>>> recmodels.evaluate("bundles/neumf", "test.parquet", train="train.parquet")  # doctest: +SKIP
>>> est = recmodels.RatingModel("neumf").fit(train_df)        # doctest: +SKIP  (torch: the train extra)

Scoring (torch-free): :class:`Bundle`, :class:`Scorer`, :class:`Recommender`, :func:`score`,
:func:`recommend`, :func:`evaluate` from :mod:`recmodels.scoring`. Training and export (the
``train`` extra): :class:`RatingModel`, :func:`train_run` from :mod:`recmodels.training`,
:func:`export_onnx` from :mod:`recmodels.export`.
"""

from __future__ import annotations

from . import _lazy

__version__ = "0.1.0"

# name -> the module that defines it; imported when the name is first touched
_EXPORTS = {
    "Bundle": "recmodels.bundle",
    "Scorer": "recmodels.scoring.pairs.scorer",
    "score": "recmodels.scoring.pairs.scorer",
    "Recommender": "recmodels.scoring.recommendation.recommender",
    "recommend": "recmodels.scoring.recommendation.recommender",
    "evaluate": "recmodels.scoring.evaluation.evaluator",
    "RatingModel": "recmodels.training.estimator",
    "train_run": "recmodels.training.pipeline",
    "export_onnx": "recmodels.export.api",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
