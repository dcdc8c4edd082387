"""Streaming batch scoring with onnxruntime (torch- and scikit-learn-free).

>>> from recmodels.scoring import Scorer, score                       # doctest: +SKIP
>>> score("bundles/neumf", "pairs.parquet", "scores.parquet")         # doctest: +SKIP
>>> Scorer("bundles/neumf", device="cpu").score_frame(df)             # doctest: +SKIP
>>> recommend("bundles/neumf", "recs/", k=10, exclude_seen="ratings.parquet")   # doctest: +SKIP
>>> print(evaluate("bundles/neumf", "test.parquet", train="train.parquet").format_table())  # doctest: +SKIP

See ``docs/scoring.md``, ``docs/recommend.md`` and ``docs/evaluate.md``.
"""

from ..bundle import Bundle
from .evaluate import evaluate
from .evaluation_report import EvaluationReport
from .providers import DeviceRequest, available_providers, create_session, cuda_compiled
from .recommend import DEFAULT_PART_USERS, DEFAULT_TOP_K, Recommender, recommend, recommend_frame
from .recommend_job import RecommendJob
from .recommend_report import RecommendReport
from .report import DEFAULT_MAX_UNKNOWN_SHARE, ScoreReport
from .scorer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CUDA_BATCH_SIZE,
    DEFAULT_PART_ROWS,
    POLICIES,
    Scorer,
    score,
    score_frame,
)
from .seen import SeenItems, read_seen
from .session import ScoringSession, load_bundle

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
