"""Streaming batch scoring with onnxruntime (torch- and scikit-learn-free).

>>> from recmodels.scoring import Scorer, score                       # doctest: +SKIP
>>> score("bundles/neumf", "pairs.parquet", "scores.parquet")         # doctest: +SKIP
>>> Scorer("bundles/neumf", device="cpu").score_frame(df)             # doctest: +SKIP
>>> recommend("bundles/neumf", "recs/", k=10, exclude_seen="ratings.parquet")   # doctest: +SKIP
>>> print(evaluate("bundles/neumf", "test.parquet", train="train.parquet").format_table())  # doctest: +SKIP

The names below are imported on first use (PEP 562), so importing a light module of this package
(:mod:`.defaults`, what the CLI's ``--help`` reads) imports neither pandas, pyarrow nor onnxruntime.
See ``docs/scoring.md``, ``docs/recommend.md`` and ``docs/evaluate.md``.
"""

from __future__ import annotations

from .. import _lazy

# name -> the module that defines it (relative to this package)
_EXPORTS = {
    "Bundle": "..bundle",
    "DEFAULT_BATCH_SIZE": ".defaults", "DEFAULT_CUDA_BATCH_SIZE": ".defaults",
    "DEFAULT_MAX_UNKNOWN_SHARE": ".defaults", "DEFAULT_PART_ROWS": ".defaults",
    "DEFAULT_PART_USERS": ".defaults", "DEFAULT_TOP_K": ".defaults", "POLICIES": ".defaults",
    "EvaluationReport": ".evaluation.report", "evaluate": ".evaluation.evaluator",
    "IndexedRatings": ".evaluation.evaluator",
    "ScoreReport": ".pairs.report",
    "Scorer": ".pairs.scorer", "score": ".pairs.scorer", "score_frame": ".pairs.scorer",
    "RecommendJob": ".recommendation.job",
    "Recommender": ".recommendation.recommender", "recommend": ".recommendation.recommender",
    "RecommendReport": ".recommendation.report",
    "SeenItems": ".recommendation.seen", "read_seen": ".recommendation.seen",
    "DeviceRequest": ".runtime.providers", "available_providers": ".runtime.providers",
    "create_session": ".runtime.providers", "cuda_compiled": ".runtime.providers",
    "ScoringSession": ".runtime.session", "load_bundle": ".runtime.session",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = _lazy.lazy_exports(globals(), _EXPORTS)
