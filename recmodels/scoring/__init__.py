"""Streaming batch scoring with onnxruntime (torch- and scikit-learn-free).

>>> from recmodels.scoring import Scorer, score                       # doctest: +SKIP
>>> score("bundles/neumf", "pairs.parquet", "scores.parquet")         # doctest: +SKIP
>>> Scorer("bundles/neumf", device="cpu").score_frame(df)             # doctest: +SKIP
>>> recommend("bundles/neumf", "recs/", k=10, exclude_seen="ratings.parquet")   # doctest: +SKIP
>>> print(evaluate("bundles/neumf", "test.parquet", train="train.parquet").format_table())  # doctest: +SKIP

See ``docs/scoring.md``, ``docs/recommend.md`` and ``docs/evaluate.md``.
"""

from ..bundle import Bundle
from .evaluation.evaluator import evaluate
from .evaluation.report import EvaluationReport
from .pairs.files import DEFAULT_PART_ROWS
from .pairs.report import ScoreReport
from .pairs.scorer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CUDA_BATCH_SIZE,
    POLICIES,
    Scorer,
    score,
    score_frame,
)
from .recommendation.job import RecommendJob
from .recommendation.recommender import (
    DEFAULT_PART_USERS,
    DEFAULT_TOP_K,
    Recommender,
    recommend,
    recommend_frame,
)
from .recommendation.report import RecommendReport
from .recommendation.seen import SeenItems, read_seen
from .runtime.providers import DeviceRequest, available_providers, create_session, cuda_compiled
from .runtime.session import ScoringSession, load_bundle
from .unknown_ids import DEFAULT_MAX_UNKNOWN_SHARE

__all__ = [
    "Bundle",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CUDA_BATCH_SIZE",
    "DEFAULT_MAX_UNKNOWN_SHARE",
    "DEFAULT_PART_ROWS",
    "DEFAULT_PART_USERS",
    "DEFAULT_TOP_K",
    "DeviceRequest",
    "EvaluationReport",
    "POLICIES",
    "RecommendJob",
    "RecommendReport",
    "Recommender",
    "ScoreReport",
    "Scorer",
    "ScoringSession",
    "SeenItems",
    "available_providers",
    "create_session",
    "cuda_compiled",
    "evaluate",
    "load_bundle",
    "read_seen",
    "recommend",
    "recommend_frame",
    "score",
    "score_frame",
]
